"""A small labelled retrieval set: each query has one known-relevant record."""

DOCS = {
    "oom": "The training job crashed with CUDA out of memory; lowering the batch size fixed it.",
    "err4711": "Error E4711 from the billing service means the invoice currency is missing.",
    "err4712": "Error E4712 from the billing service means the customer account is locked.",
    "paris": "Paris is the capital and largest city of France.",
    "tokyo": "Tokyo is the capital of Japan and its most populous metropolis.",
    "python_gil": "CPython's global interpreter lock lets only one thread execute bytecode at a time.",
    "sqlite_wal": "SQLite write-ahead logging lets readers continue while a single writer commits.",
    "bm25": "BM25 ranks documents by term frequency, inverse document frequency and length.",
    "faiss": "faiss performs fast nearest-neighbour search over dense embedding vectors.",
    "bread": "Knead the dough for ten minutes, let it rise, then bake the loaf at 220 degrees.",
    "running": "Jogging three times a week improves cardiovascular fitness and mood.",
    "sleep": "Adults need seven to nine hours of sleep per night to stay healthy.",
    "rust_borrow": "Rust's borrow checker rejects code that holds two mutable references at once.",
    "git_rebase": "git rebase replays your commits on top of another branch to keep history linear.",
    "kill_sig": "SIGKILL cannot be caught or ignored; the kernel terminates the process at once.",
    "python_snake": "The python is a large snake that kills its prey by constriction.",
    "capital_gains": "Capital gains tax is charged on the profit when you sell shares or a house.",
    "rust_metal": "Rust forms when iron reacts with water and oxygen over time.",
    "coffee": "Espresso is brewed by forcing hot water through finely ground coffee beans.",
}

# (query, relevant id). Some are built so that one retriever alone fails: exact codes
# defeat the embedding ("E4712"); rare-word collisions defeat BM25 ("kills" -> the snake).
QUERIES = [
    ("billing error E4711", "err4711"),
    ("E4712", "err4712"),
    ("error E4711 account locked", "err4712"),
    ("GPU ran out of VRAM during training", "oom"),
    ("which city is the seat of the French government", "paris"),
    ("is there a large city in Japan", "tokyo"),
    ("why can only one Python thread run at once", "python_gil"),
    ("kills the process instantly", "kill_sig"),
    ("why is my Rust code rejected for two mutable borrows", "rust_borrow"),
    ("does water make iron weaker", "rust_metal"),
    ("time for the dough to rise before baking bread", "bread"),
    ("what tax do I pay when I sell my house at a profit", "capital_gains"),
    ("approximate vector similarity search library", "faiss"),
    ("keep history linear when replaying commits", "git_rebase"),
    ("do readers block while SQLite commits", "sqlite_wal"),
    ("oxygen for the lungs while jogging", "running"),
]
