# A test function: the payload's "do" says how to behave.
import os
import sys
import time

from sluice_function import PermanentError, Result, handler


@handler
def handle(req):
    p = req["payload"] or {}
    do = p.get("do", "ok")
    if do == "ok":
        return Result({"pid": os.getpid(), "got": p, "attempt": req["attempt"], "run": req["run"],
                       "deadline": req.get("deadline"), "env": os.environ.get("FN_SECRET")},
                      meta={"handled_by": "python"})
    if do == "body":
        with open(req["body_path"], "rb") as f:
            return {"size": len(f.read()), "object": req.get("object")}
    if do == "crash":
        print("about to crash on", req["id"], file=sys.stderr, flush=True)
        os._exit(3)
    if do == "hang":
        time.sleep(3600)
    if do == "spin":
        while True:
            pass
    if do == "permanent":
        raise PermanentError("bad order: no total")
    if do == "transient":
        raise RuntimeError("database busy")
    if do == "notjson":
        print("debug: hello", flush=True)
        return {}
    if do == "twice":  # a stray line after the answer
        import json, threading
        threading.Timer(0.01, lambda: (sys.stdout.write(json.dumps({"id": "stray"}) + "\n"), sys.stdout.flush())).start()
        return {"pid": os.getpid()}
    if do == "big":
        return {"blob": "x" * 100000}
    if do == "hog":
        hog = bytearray(512 << 20)
        return {"len": len(hog)}
    raise PermanentError("unknown do: %s" % do)
