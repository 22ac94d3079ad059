"""One template per message, in files a person edits (templates/notifications/):

    RULE.txt        the email's text part; its first line is ``Subject: ...``
    RULE.html       the email's HTML part (autoescaped)
    RULE.sms.txt    the text message

Jinja2 with StrictUndefined: a template naming a parameter the rule does not
give fails (the message becomes a dead letter naming the template and the
parameter) instead of sending a blank. The parameters are the outbox row's
(figures already rounded in SQL); ``gbp`` formats an amount as pounds.
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import jinja2

from flows.paths import NOTIFICATION_TEMPLATES

SMS_MAX = 480  # characters: three concatenated GSM segments; longer texts cost more and read badly


class TemplateFailed(Exception):
    """The template is missing, broken, or names a parameter the message lacks (permanent: a dead letter)."""


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


def gbp(amount) -> str:
    """'12.3' -> '£12.30', '-3.2' -> '-£3.20' (already rounded to the penny in SQL)."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation as error:
        raise TemplateFailed(f"not an amount: {amount!r}") from error
    return f"{'-' if value < 0 else ''}£{abs(value):,.2f}"


class Templates:
    def __init__(self, directory: Path = NOTIFICATION_TEMPLATES):
        self.directory = directory
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["gbp"] = gbp

    def _render(self, name: str, parameters: dict) -> str:
        try:
            return self.env.get_template(name).render(parameters)
        except jinja2.TemplateNotFound as error:
            raise TemplateFailed(f"no template {name} in {self.directory}") from error
        except jinja2.TemplateError as error:
            raise TemplateFailed(f"template {name}: {error}") from error

    def email(self, template: str, parameters: dict) -> Email:
        text = self._render(f"{template}.txt", parameters)
        first, _, body = text.partition("\n")
        if not first.startswith("Subject:") or not first[len("Subject:"):].strip():
            raise TemplateFailed(f"template {template}.txt must start with a 'Subject: ...' line")
        return Email(subject=first[len("Subject:"):].strip(), text=body.lstrip("\n"),
                     html=self._render(f"{template}.html", parameters))

    def sms(self, template: str, parameters: dict) -> str:
        text = " ".join(self._render(f"{template}.sms.txt", parameters).split())
        if len(text) > SMS_MAX:
            raise TemplateFailed(f"template {template}.sms.txt renders {len(text)} characters (at most {SMS_MAX})")
        return text
