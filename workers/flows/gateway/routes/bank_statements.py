"""POST /bank/statements?bank_account=NAME[&format=auto|camt053|ofx|mt940|csv][&esco=CODE]: import a bank file.

The operator API of `flows bank import`: the body is the bank's file as it
came (CAMT.053, OFX, MT940 or CSV), ``Authorization: Bearer <JWT>`` the same
token as PostgREST's. The file is read in Python (flows.bank.parse) and
written by the same ONE SQL call as the CLI (``api.import_bank_statement``),
as the token's role and claims (row-level security: an operator imports into
their ESCO's accounts), in one transaction. Answers 201 with what was imported
and matched, 200 ``already_imported`` for a file seen before, 400 naming the
field or entry (nothing written), 401 without a valid token, 403 for a role
that may not import, 413 for a file over 20 MB.
"""

import asyncio
import json

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flows.bank.parse import read
from flows.bank.statement import StatementError
from flows.gateway import queries
from flows.gateway.principal import AuthError, bearer, verify
from flows.log import get_logger

log = get_logger("flows.gateway.bank")
MAX_BYTES = 20 * 1024 * 1024


class BankImports:
    """A small pool of its own, like the webhooks'."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.pool: asyncpg.Pool | None = None

    async def acquire(self) -> asyncpg.Pool:
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.database_url, min_size=0, max_size=4,
                                                  server_settings={"application_name": "flows-gateway-bank"})
        return self.pool

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


def problem(status: int, message: str, hint: str | None = None, **headers) -> JSONResponse:
    return JSONResponse({"message": message, "hint": hint}, status_code=status, headers=headers or None)


def routes(gateway) -> list:
    imports = BankImports(gateway.config.database_url)
    gateway.resources.append(imports)

    async def import_statement(request: Request):
        try:
            principal = verify(bearer(request.headers.get("authorization")), gateway.config.jwt_secret)
        except AuthError as error:
            return problem(401, str(error), "send Authorization: Bearer <JWT> (flows token)",
                           **{"WWW-Authenticate": "Bearer"})
        params = request.query_params
        account, fmt, esco = params.get("bank_account"), params.get("format", "auto"), params.get("esco")
        if not account:
            return problem(400, "bank_account is required", "e.g. POST /bank/statements?bank_account=main")
        body = await request.body()
        if len(body) > MAX_BYTES:
            return problem(413, f"the file is over {MAX_BYTES // 1024 // 1024} MB")
        if not body:
            return problem(400, "the body must be the bank's file")
        pool = await imports.acquire()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(queries.AS_AUDIENCE, principal.role, json.dumps(principal.claims))
                found = json.loads(await conn.fetchval(queries.BANK_ACCOUNT, account, esco))
                bank_file = await asyncio.to_thread(read, body, fmt, found.get("csv_mapping"),
                                                    params.get("file_name"))
                result = await conn.fetchval(queries.IMPORT_BANK_STATEMENT, account,
                                             json.dumps(bank_file.to_json()), esco)
        except StatementError as error:
            return problem(400, str(error), "the file was not imported")
        except asyncpg.PostgresError as error:
            state = error.sqlstate or ""
            if state[:2] in ("22", "23"):
                return problem(400, error.message, getattr(error, "hint", None))
            if state == "42501":
                return problem(403, error.message, "importing needs an operator (or admin) token")
            log.error("bank import failed", bank_account=account, error=str(error))
            return problem(500, "not imported: the database failed", str(error))
        outcome = json.loads(result)
        log.info("bank statement", bank_account=account, format=bank_file.format, outcome=outcome["outcome"],
                 added=outcome.get("added"), queued=outcome.get("queued"), sub=principal.claims.get("sub"))
        return Response(result, status_code=201 if outcome["outcome"] == "imported" else 200,
                        media_type="application/json")

    return [Route("/bank/statements", import_statement, methods=["POST"])]
