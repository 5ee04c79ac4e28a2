"""Plain synchronous code: the same API without await (no event loop of yours needed)."""

from wrenn import StreamStdout, WrennClient

with WrennClient() as client, client.capsule() as cap:
    print(cap.commands.run("uname -sr").stdout, end="")
    for event in cap.commands.stream("for i in 1 2 3; do echo line $i; sleep 0.1; done"):
        if isinstance(event, StreamStdout):
            print("streamed:", event.data, end="")
    cap.files.write("data.csv", "a,b\n1,2\n")
    print("files:", [entry.name for entry in cap.files.list()])
    with client.pool(2) as pool:  # warm capsules reused for small jobs
        print(
            "pool:",
            pool.map(lambda c, n: c.commands.run(f"echo $(({n}*{n}))").stdout.strip(), range(4)),
        )
