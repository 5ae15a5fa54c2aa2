"""The text-frame fast path (csms.ocpp.wsframes), checked against the `websockets` package's own framing,
and over a real socket: whatever the fast path declines still meets RFC 6455 through the protocol."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from csms.ocpp.websocket import WebSocket
from csms.ocpp.wsframes import take_text_frames, text_frame
from tests.ocpp.test_websocket import echo, raw_client, serve, wait_for

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70_000]


def client_frame(text: str, *, opcode: Opcode = Opcode.TEXT, fin: bool = True, mask: bool = True) -> bytes:
    """A frame as a client writes it, serialized by `websockets` (random mask)."""
    return Frame(opcode, text.encode(), fin).serialize(mask=mask)


@pytest.mark.parametrize("size", SIZES)
def test_reads_what_websockets_writes_and_writes_what_it_reads(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    data = client_frame(text) + client_frame("[2]")
    assert take_text_frames(data, None) == ([text, "[2]"], len(data))

    protocol = ClientProtocol(parse_uri("ws://127.0.0.1/ocpp/CP1"))  # how a charger reads our frame
    protocol.state = State.OPEN
    protocol.parser = protocol.parse()
    next(protocol.parser)
    protocol.receive_data(text_frame(text.encode()))
    [frame] = protocol.events_received()
    assert (frame.opcode, frame.fin, bytes(frame.data)) == (Opcode.TEXT, True, text.encode())


@pytest.mark.parametrize(
    "declined",
    [
        client_frame("x", opcode=Opcode.BINARY),
        client_frame("x", fin=False),
        client_frame("", opcode=Opcode.PING),
        client_frame("", opcode=Opcode.CLOSE),
        client_frame("x", mask=False),
        bytes([0xC1]) + client_frame("x")[1:],  # RSV1 set
        Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=True),  # not UTF-8
        client_frame("y" * 1025),  # over the limit
    ],
)
def test_stops_at_anything_the_protocol_must_judge(declined: bytes) -> None:
    first = client_frame("[2,\"1\",\"Heartbeat\",{}]")
    data = first + declined + client_frame("after")
    assert take_text_frames(data, 1024) == (['[2,"1","Heartbeat",{}]'], len(first))


def test_an_incomplete_frame_is_left_for_the_next_read() -> None:
    assert take_text_frames(b"", None) == ([], 0)
    assert take_text_frames(client_frame("")[:5], None) == ([], 0)
    first = client_frame("[2]")
    for size in SIZES[1:]:
        partial = client_frame("x" * size)[:-1]
        assert take_text_frames(first + partial, None) == (["[2]"], len(first))


async def test_frames_split_and_batched_across_reads_arrive_whole_and_in_order() -> None:
    texts = [f"m{i}-" + "z" * n for i, n in enumerate([0, 1, 125, 126, 127, 65_000])]  # limit: 65,536
    wire = b"".join(client_frame(t) for t in texts)
    async with serve(echo) as server, raw_client(server) as (stream, protocol):
        rng = random.Random(7)
        cuts = sorted({0, len(wire), *(rng.randrange(len(wire)) for _ in range(12))})
        for start, end in itertools.pairwise(cuts):
            await stream.send_all(wire[start:end])
            await trio.sleep(0.002)  # separate reads on the server
        echoed: list[str] = []
        with trio.fail_after(10):
            while len(echoed) < len(texts):
                protocol.receive_data(await stream.receive_some())
                echoed += [bytes(f.data).decode() for f in protocol.events_received() if isinstance(f, Frame)]
    assert echoed == texts


@pytest.mark.parametrize(("bad", "code"), [
    (Frame(Opcode.TEXT, b"\xff").serialize(mask=True), 1007),
    (client_frame("x", mask=False), 1002),
])
async def test_a_good_frame_then_a_bad_one_in_one_read(bad: bytes, code: int) -> None:
    async def record(ws: WebSocket) -> None:
        while True:
            server.results.append(await ws.receive_text())

    async with serve(record) as server, raw_client(server) as (stream, protocol):
        await stream.send_all(client_frame("ok") + bad + client_frame("dropped"))
        await wait_for(lambda: bool(server.closed))
        with trio.fail_after(5):
            while protocol.close_rcvd is None:
                protocol.receive_data(await stream.receive_some())
    # As RFC 6455 asks: what came before the bad frame is delivered, nothing after it.
    assert server.results == ["ok"]
    assert server.closed[0].code == code
    assert protocol.close_rcvd.code == code
