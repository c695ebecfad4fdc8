#!/usr/bin/python3
"""http_bench — blindspot over HTTP for `make bench`: the peer's attacks sent
to a running blindspotd, and the request body for wrk's infer benchmark.

usage:
  http_bench.py attack URL MODEL DATA_DIR N CLIENTS
      POST /v1/attacks for mnist test images 0..N-1, image i towards
      (label+1) mod 10, from CLIENTS clients at once (each a thread with its
      own keep-alive connection taking the next image); prints one JSON
      object: attacks/s, success, mean distortion
  http_bench.py infer-body MODEL DATA_DIR
      the KServe v2 infer request for mnist test image 0, for infer.lua
  http_bench.py attack-bodies MODEL DATA_DIR N [PARAMS]
      the POST /v1/attacks bodies for mnist test images 0..N-1, image i
      towards (label+1) mod 10, one a line, for attack.lua; PARAMS (JSON
      text) is the lbfgs params of every request (none: the defaults)
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

import peer


def attack_request(model, labels, i, params=None):
    """The request attacking mnist test image i towards (label+1) mod 10."""
    doc = {"model": model, "image": {"dataset": "mnist", "split": "test", "index": i},
           "target": int((labels[i] + 1) % 10), "method": "lbfgs"}
    if params:
        doc["params"] = params
    return doc


def attack_all(url, model, labels, count, clients):
    host = urllib.parse.urlsplit(url)
    results = [None] * count
    next_index = [0]
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=600)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= count:
                break
            body = json.dumps(attack_request(model, labels, i))
            conn.request("POST", "/v1/attacks", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError(f"image {i}: HTTP {resp.status}: {doc}")
            results[i] = doc["results"][0]
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if any(r is None for r in results):
        raise RuntimeError("some attacks got no answer")
    wins = [r for r in results if r["success"]]
    return {"model": model, "n": count, "clients": clients, "seconds": secs,
            "attacks_per_s": count / secs, "success": len(wins) / count,
            "distortion": sum(r["norms"]["distortion"] for r in wins) / len(wins) if wins else None,
            "evaluations_per_attack": sum(r["evaluations"] for r in results) / count}


def main(argv):
    if len(argv) == 7 and argv[1] == "attack":
        _, labels = peer.load_test(argv[4])
        print(json.dumps(attack_all(argv[2], argv[3], labels, int(argv[5]), int(argv[6]))))
        return 0
    if len(argv) == 4 and argv[1] == "infer-body":
        images, _ = peer.load_test(argv[3])
        print(json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28],
                                      "datatype": "FP32",
                                      "data": [float(v) for v in images[0]]}]}))
        return 0
    if len(argv) in (5, 6) and argv[1] == "attack-bodies":
        _, labels = peer.load_test(argv[3])
        params = json.loads(argv[5]) if len(argv) == 6 else None
        for i in range(int(argv[4])):
            print(json.dumps(attack_request(argv[2], labels, i, params)))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
