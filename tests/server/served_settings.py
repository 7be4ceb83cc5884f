"""Settings of the per-engine test server (shared by its fixture and the API tests)."""
API_KEY = "test-key"
MAX_NUM_SEQS = 4
MAX_QUEUE = 6
