"""A writer process for the durability tests: adds batches forever (or N) and prints, after
each ``add`` returns, the committed ids as one JSON line."""
from __future__ import annotations

import json
import sys

from braid.memory import HashingEmbedder, Store


def main(path: str, collection: str, tag: str, batches: int, batch_size: int) -> None:
    store = Store.open(path, embedder=HashingEmbedder())
    coll = store.collection(collection)
    b = 0
    while batches < 0 or b < batches:
        records = [{"text": f"record {tag}x{b}x{i} from writer {tag} batch {b} item {i} "
                            + "filler words about memory stores " * 3,
                    "metadata": {"writer": tag, "batch": b, "item": i}}
                   for i in range(batch_size)]
        ids = coll.add(records)
        print(json.dumps(ids), flush=True)
        b += 1
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
