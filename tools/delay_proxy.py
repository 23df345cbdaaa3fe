# A TCP proxy on 127.0.0.1:15432 in front of the local PostgreSQL (127.0.0.1:5432) that
# holds every chunk the server sends for DELAY seconds (first argument, default 0.001),
# keeping their order: it stands in for a PostgreSQL on another host, where each round
# trip costs that much more. The event loop's timers are about a millisecond coarse, so
# small delays round up (0.0005 measured 1.3 ms per `SELECT 1` in psql).
#
#   python3 tools/delay_proxy.py 0.0005 &
#   ./target/release/wp-lite --database-url postgres://postgres@127.0.0.1:15432/test \
#       bench --scenario http-roundtrip --ops 10000
import asyncio, sys, time
DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.001
async def pump(reader, writer, delay):
    q = asyncio.Queue()
    async def out():
        while True:
            item = await q.get()
            if item is None:
                writer.close(); return
            t, data = item
            wait = t + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    task = asyncio.create_task(out())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            q.put_nowait((time.monotonic(), data))
    finally:
        q.put_nowait(None)
        await task
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection('127.0.0.1', 5432)
    await asyncio.gather(pump(cr, sw, 0), pump(sr, cw, DELAY), return_exceptions=True)
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 15432)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
