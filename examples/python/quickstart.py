"""TetherDB from Python: open the embedded default, write, queue a write with
the tether decorator, read, list, close. Needs `pip install ./bindings/python`,
which builds the library into the package (TETHERDB_LIBRARY overrides it)."""

from tetherdb import DB

# No configuration: the embedded default, a local store in ./tetherdb_data.
# As in the Python TetherDB, the worker for queued writes runs inside `with`.
with DB() as db:
    db.write_message("greeting", "hello, world", bucket="messages")

    # tether writes what the function returns: a "value" (dict or str) under
    # its "key", or under a new UUID v4 when there is none; queued here.
    @db.tether(bucket="messages", queue=True)
    def log_event(event):
        return {"value": {"event": event}}

    log_event("login")
    db.flush()  # waits until queued writes are applied

    print("read greeting:", db.read_message("greeting", bucket="messages"))
    print("read absent:", db.read_message("absent", bucket="messages"))

    marker = None
    while True:
        page = db.list_messages(page_size=10, start_after=marker, bucket="messages")
        for message in page["messages"]:
            print("listed", message)
        marker = page["next_marker"]
        if marker is None:
            break

db.close()  # leaving `with` stopped the worker; close releases the store
