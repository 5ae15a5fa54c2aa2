"""A sandbox QR payment provider (O!Dengi-style) for development and tests: a real HTTP server.

It implements the wire API csms speaks (``csms/services/payments/odengi.py``):

- merchant API, every request signed (``X-Merchant-Id``, ``X-Timestamp``, ``X-Signature: v1=<hex
  HMAC-SHA256(api secret, "timestamp.METHOD.path.body")>``): ``POST /api/v1/invoices``,
  ``GET /api/v1/orders/<order id>``, ``POST /api/v1/orders/<order id>/cancel``;
- the payer's side: ``GET /pay/<invoice id>`` shows the QR code with Approve / Decline / Cancel buttons,
  ``GET /pay/<invoice id>/qr.svg`` serves the QR code;
- sandbox controls (no authentication: bind it to localhost): ``POST /sandbox/invoices/<id>/approve``
  (JSON ``{"amount": ..., "force": true}`` to pay another amount, or after expiry), ``.../decline``,
  ``.../cancel``, ``GET /sandbox/invoices``, ``GET|POST /sandbox/faults``, ``POST /sandbox/release``,
  ``GET /sandbox/deliveries``.

Every payment decision is sent to the merchant's callback URL as a webhook signed with the webhook
secret (``X-Odengi-Timestamp``, ``X-Odengi-Signature: v1=<hex HMAC-SHA256(secret, "timestamp.body")>``),
retried on failure. Fault switches (:class:`Faults`) duplicate, delay, hold, reorder, drop or corrupt
webhooks, and make the merchant API answer slowly.

By hand::

    python -m simulators.payment_provider serve --port 8700 --webhook-url http://127.0.0.1:8000/webhooks/payments/odengi
    python -m simulators.payment_provider list
    python -m simulators.payment_provider approve <invoice or order id> [--amount 15000] [--force]
    python -m simulators.payment_provider decline|cancel <invoice or order id>

Secrets come from ``--api-secret`` / ``--webhook-secret`` or ``SANDBOX_API_SECRET`` /
``SANDBOX_WEBHOOK_SECRET``. Tests drive :class:`~simulators.payment_sandbox.PaymentSandbox` in-process and serve it with
:func:`serve_sandbox`. It never imports csms.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import json
import logging
import os
import sys
from dataclasses import asdict
from typing import Any

import httpx
import segno
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from simulators.payment_sandbox import Delivery, Faults, PaymentSandbox, SandboxError, SandboxInvoice

__all__ = ["Delivery", "Faults", "PaymentSandbox", "SandboxError", "SandboxInvoice", "build_app", "main",
           "serve_sandbox"]

log = logging.getLogger("simulators.payment_provider")


def build_app(sandbox: PaymentSandbox) -> QuartTrio:
    """The HTTP app: merchant API, payer pages and sandbox controls."""
    app = QuartTrio("payment_provider")

    async def merchant(handler: Any) -> tuple[dict[str, Any], int]:
        sandbox.api_requests += 1
        if sandbox.faults.slow_s:
            await trio.sleep(sandbox.faults.slow_s)
        body = await request.get_data(as_text=False)
        assert isinstance(body, bytes)
        headers = {k.lower(): v for k, v in request.headers.items()}
        refusal = sandbox.check_merchant_request(headers, request.method, request.path, body)
        if refusal is not None:
            return {"error": refusal}, 401
        try:
            invoice = handler(json.loads(body) if body else {})
        except SandboxError as exc:
            return {"error": str(exc)}, exc.status
        except ValueError:
            return {"error": "body is not JSON"}, 400
        return invoice.document(sandbox.pay_url(invoice)), 200

    @app.post("/api/v1/invoices")
    async def create_invoice() -> tuple[dict[str, Any], int]:
        return await merchant(sandbox.create)

    @app.get("/api/v1/orders/<order_id>")
    async def get_order(order_id: str) -> tuple[dict[str, Any], int]:
        return await merchant(lambda _body: sandbox.find(order_id))

    @app.post("/api/v1/orders/<order_id>/cancel")
    async def cancel_order(order_id: str) -> tuple[dict[str, Any], int]:
        return await merchant(lambda _body: sandbox.cancel(order_id))

    @app.get("/pay/<ref>/qr.svg")
    async def qr(ref: str) -> Response:
        invoice = sandbox.invoices.get(ref)
        if invoice is None:
            return Response("no such invoice\n", status=404)
        out = io.BytesIO()
        segno.make_qr(sandbox.pay_url(invoice), error="m").save(out, kind="svg", scale=6)
        return Response(out.getvalue(), content_type="image/svg+xml")

    @app.get("/pay/<ref>")
    async def pay_page(ref: str) -> Response:
        try:
            invoice = sandbox.find(ref)
        except SandboxError:
            return Response("no such invoice\n", status=404)
        ref = invoice.invoice_id
        buttons = "".join(f'<form method="post" action="/sandbox/invoices/{ref}/{action}">'
                          f"<button>{action.title()}</button></form>" for action in ("approve", "decline", "cancel"))
        page = (f"<!doctype html><title>Sandbox payment</title><h1>Pay {invoice.amount / 100:.2f} KGS</h1>"
                f"<p>{html.escape(invoice.description)} · status <b>{invoice.status}</b> · order "
                f"{html.escape(invoice.order_id)}</p><img src='/pay/{ref}/qr.svg' alt='QR'>{buttons}")
        return Response(page, content_type="text/html; charset=utf-8")

    @app.post("/sandbox/invoices/<ref>/<action>")
    async def control(ref: str, action: str) -> tuple[dict[str, Any], int] | Response:
        from_page = request.mimetype == "application/x-www-form-urlencoded"  # a button on the pay page
        body = {} if from_page else await request.get_json(force=True, silent=True) or {}
        try:
            if action == "approve":
                amount = body.get("amount")
                invoice = sandbox.approve(ref, int(amount) if amount is not None else None,
                                          force=bool(body.get("force")))
            elif action in ("decline", "cancel"):
                invoice = getattr(sandbox, action)(ref)
            else:
                return {"error": "unknown action"}, 404
        except SandboxError as exc:
            return {"error": str(exc)}, exc.status
        if from_page:
            return Response("", status=303, headers={"Location": f"/pay/{invoice.invoice_id}"})
        return invoice.document(sandbox.pay_url(invoice)), 200

    @app.get("/sandbox/invoices")
    async def list_invoices() -> dict[str, Any]:
        return {"invoices": [i.document(sandbox.pay_url(i)) for i in sandbox.invoices.values()]}

    @app.route("/sandbox/faults", methods=["GET", "POST"])
    async def faults() -> tuple[dict[str, Any], int]:
        if request.method == "POST":
            changes = await request.get_json(force=True, silent=True) or {}
            try:
                sandbox.faults = Faults(**{**asdict(sandbox.faults), **changes})
            except TypeError:
                return {"error": f"faults are {', '.join(asdict(Faults()))}"}, 400
        return asdict(sandbox.faults), 200

    @app.post("/sandbox/release")
    async def release() -> dict[str, Any]:
        body = await request.get_json(force=True, silent=True) or {}
        return {"released": sandbox.release(reverse=bool(body.get("reverse")))}

    @app.get("/sandbox/deliveries")
    async def deliveries() -> dict[str, Any]:
        return {"deliveries": [asdict(d) for d in sandbox.deliveries]}

    return app


async def serve_sandbox(sandbox: PaymentSandbox, host: str = "127.0.0.1", port: int = 0, *,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve and send webhooks until cancelled; ``task_status.started(base_url)`` once listening."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("simulators.payment_provider.http")
    async with trio.open_nursery() as nursery:
        await nursery.start(sandbox.run_sender)
        binds: list[str] = await nursery.start(lambda task_status: serve(build_app(sandbox), config,
                                                                         task_status=task_status))
        sandbox.url = sandbox.url or binds[0]
        task_status.started(binds[0])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulators.payment_provider",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the sandbox provider")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8700)
    run.add_argument("--merchant-id", default="csms-dev")
    run.add_argument("--api-secret", default=os.environ.get("SANDBOX_API_SECRET"))
    run.add_argument("--webhook-secret", default=os.environ.get("SANDBOX_WEBHOOK_SECRET"))
    run.add_argument("--webhook-url", help="where webhooks go when an invoice names no callback_url")
    for action in ("approve", "decline", "cancel"):
        command = sub.add_parser(action, help=f"{action} an invoice (by invoice or order id)")
        command.add_argument("invoice")
        command.add_argument("--url", default="http://127.0.0.1:8700")
        if action == "approve":
            command.add_argument("--amount", type=int, help="pay this many tyiyn instead of the invoice's amount")
            command.add_argument("--force", action="store_true", help="pay even if expired or already paid")
    listing = sub.add_parser("list", help="list the sandbox's invoices")
    listing.add_argument("--url", default="http://127.0.0.1:8700")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        for inv in httpx.get(f"{args.url}/sandbox/invoices", timeout=10).json()["invoices"]:
            print(f"{inv['invoice_id']}  order {inv['order_id']}  {inv['amount']:>9} tyiyn  {inv['status']:<9}  "
                  f"{inv['pay_url']}")
        return 0
    if args.command != "serve":
        body = {"amount": args.amount, "force": args.force} if args.command == "approve" else {}
        response = httpx.post(f"{args.url}/sandbox/invoices/{args.invoice}/{args.command}", json=body, timeout=10)
        print(json.dumps(response.json(), indent=2))
        return 0 if response.status_code == 200 else 1
    if not args.api_secret or not args.webhook_secret:
        print("serve needs --api-secret and --webhook-secret (or SANDBOX_API_SECRET / SANDBOX_WEBHOOK_SECRET)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sandbox = PaymentSandbox(args.merchant_id, args.api_secret, args.webhook_secret, webhook_url=args.webhook_url)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_sandbox, sandbox, args.host, args.port)
            print(f"sandbox payment provider on {url} (merchant {args.merchant_id}); pay pages at {url}/pay/<invoice>",
                  flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
