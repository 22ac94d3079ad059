"""Connection details of the PostgreSQL server the tests use."""

from dataclasses import dataclass

from pytest_postgresql.janitor import DatabaseJanitor

from flows.stack.postgres import Cluster


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str | None = None
    cluster: Cluster | None = None  # set when the tests started the server themselves

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        user = user or self.user
        password = password if user != self.user else (password or self.password)
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def janitor(self, dbname: str, **kwargs) -> DatabaseJanitor:
        """Creates ``dbname`` on entry (from ``template_dbname=`` if given), drops it on exit."""
        return DatabaseJanitor(
            user=self.user, host=self.host, port=self.port, password=self.password, dbname=dbname, **kwargs
        )

    def libpq_args(self) -> list[str]:
        """Connection options for psql, pg_dump and pg_prove."""
        return ["--host", self.host, "--port", str(self.port), "--username", self.user]

    def libpq_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password} if self.password else {}
