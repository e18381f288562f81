"""The GraphiQL playground page. Every asset is served by the app from bff/static (no CDN)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bff playground</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/graphiql/graphiql.min.css">
</head>
<body style="margin:0;height:100vh">
<div id="graphiql" style="height:100vh">Loading the playground…</div>
<script src="/static/graphiql/react.production.min.js"></script>
<script src="/static/graphiql/react-dom.production.min.js"></script>
<script src="/static/graphiql/graphiql.min.js"></script>
<script src="/static/graphiql/graphql-ws.min.js"></script>
<script src="/static/graphiql/playground.js"></script>
</body>
</html>
"""


async def playground(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)
