"""The store layer: run records, the model cache, the set-aside folder, the folder layout, provenance and atomic
file io. It imports nothing of the engine or above; a caller makes one :class:`Store` and passes it down."""

from benchmark.store.io import StagedFolder, atomic_torch_save, atomic_write_bytes, atomic_write_json, load_state
from benchmark.store.provenance import code_dirty, committed_files, provenance
from benchmark.store.records import record_problem, run_id_of, stable_hash
from benchmark.store.store import Store, StoredRuns, UnstorableRecord

__all__ = ["StagedFolder", "Store", "StoredRuns", "atomic_torch_save", "atomic_write_bytes", "atomic_write_json",
           "code_dirty", "committed_files", "load_state", "provenance", "record_problem", "run_id_of", "stable_hash",
           "UnstorableRecord"]
