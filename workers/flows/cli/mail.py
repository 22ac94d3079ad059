"""`flows mail`: the mail catcher (what `flows up` runs instead of a real relay)
and what it caught: `catch`, `list`, `show`, and `texts` (the SMS test
gateway's). The folder is the embedded stack's (FLOWS_MAIL_DIR, or `mail/`
in its home): `inbox/` is a Maildir, `texts.jsonl` the texts."""

import asyncio
import signal
from pathlib import Path

import click

from flows.cli.common import emit, json_option, settings
from flows.notifications import catcher
from flows.notifications.sms_test_gateway import recorded_texts

dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
                          help="The catcher's folder (default: the embedded stack's mail folder).")


def _folder(directory: Path | None) -> Path:
    return directory or settings().mail_dir


@click.group()
def mail() -> None:
    """The local mail catcher and the mail (and texts) it caught."""


@mail.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=1025, show_default=True, help="SMTP port.")
@click.option("--sms-port", type=int, default=None,
              help="Also serve the SMS test gateway (Twilio's Messages API) on this port.")
@dir_option
def catch(host: str, port: int, sms_port: int | None, directory: Path | None) -> None:
    """Accept every email on HOST:PORT (SMTP) and keep it, delivering nothing."""
    folder = _folder(directory)
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(f"catching mail on smtp://{host}:{port} into {folder / 'inbox'}", err=True)
    if sms_port:
        click.echo(f"SMS test gateway (Twilio's Messages API) on http://{host}:{sms_port}", err=True)
    asyncio.run(_catch(folder, host, port, sms_port))


async def _catch(folder: Path, host: str, port: int, sms_port: int | None) -> None:
    server = await catcher.serve(folder / "inbox", host, port)
    try:
        if sms_port:
            import uvicorn

            from flows.notifications.sms_test_gateway import TestGateway

            gateway = TestGateway(record=folder / "texts.jsonl")
            await uvicorn.Server(uvicorn.Config(gateway.app, host=host, port=sms_port, log_level="warning",
                                                access_log=False)).serve()  # until SIGTERM/SIGINT
        else:
            stop = asyncio.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
            await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


@mail.command(name="list")
@click.option("--to", default=None, help="Only mail to this address.")
@json_option
@dir_option
def list_mail(to: str | None, as_json: bool, directory: Path | None) -> None:
    """The caught mail, oldest first."""
    found = [m.summary() for m in catcher.caught_mail(_folder(directory) / "inbox") if to is None or to in m.to]

    def human(rows):
        if not rows:
            click.echo("no mail caught")
        for row in rows:
            attached = f"  [{', '.join(row['attachments'])}]" if row["attachments"] else ""
            click.echo(f"{row['id']}  {row['caught_at'][:19]}  {row['to']:32}  {row['subject']}{attached}")

    emit(found, as_json, human)


@mail.command()
@click.argument("mail_id")
@click.option("--html", is_flag=True, help="Print the HTML part instead of the text.")
@json_option
@dir_option
def show(mail_id: str, html: bool, as_json: bool, directory: Path | None) -> None:
    """One caught message (MAIL_ID: its id from `flows mail list`, or the start of it)."""
    detail = catcher.one_mail(_folder(directory) / "inbox", mail_id).detail()

    def human(row):
        for name in ("From", "To", "Reply-To", "Subject", "Date", "Message-ID"):
            if row["headers"].get(name):
                click.echo(f"{name}: {row['headers'][name]}")
        if row["attachments"]:
            click.echo(f"Attachments: {', '.join(row['attachments'])}")
        click.echo("")
        click.echo(row["html"] if html else row["text"])

    emit(detail, as_json, human)


@mail.command()
@json_option
@dir_option
def texts(as_json: bool, directory: Path | None) -> None:
    """The texts the SMS test gateway accepted, oldest first."""
    found = recorded_texts(_folder(directory) / "texts.jsonl")

    def human(rows):
        if not rows:
            click.echo("no texts")
        for row in rows:
            click.echo(f"{row['sid'][:12]}  {row['date_created']}  {row['to']:14}  {row['body']}")

    emit(found, as_json, human)
