"""GET /live: a page that shows an ESCO's meters (balance, health) updating live over SSE."""

from importlib.resources import files

from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

PAGE = files("flows.gateway").joinpath("static/live.html")


def routes(gateway) -> list:
    async def live(request):
        return HTMLResponse(PAGE.read_text(), headers={"Cache-Control": "no-cache",
                                                       "Referrer-Policy": "no-referrer"})

    async def index(request):
        return RedirectResponse("/live")

    return [Route("/live", live), Route("/", index)]
