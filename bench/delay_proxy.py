#!/usr/bin/env python3
"""A TCP proxy on loopback that delays every chunk by DELAY ms each way,
keeping order: a stand-in for a network round trip, for measurement only."""
import asyncio, sys, time

LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pipe(reader, writer):
    queue = asyncio.Queue()
    async def pump():
        while True:
            at, data = await queue.get()
            if data is None:
                break
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()
    task = asyncio.create_task(pump())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await queue.put((time.monotonic() + DELAY, data))
    finally:
        await queue.put((0, None))
        await task

async def handle(r1, w1):
    try:
        r2, w2 = await asyncio.open_connection("127.0.0.1", TARGET)
    except OSError:
        w1.close()
        return
    await asyncio.gather(pipe(r1, w2), pipe(r2, w1), return_exceptions=True)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with server:
        await server.serve_forever()

asyncio.run(main())
