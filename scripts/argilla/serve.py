"""Runs a real argilla-server 2.8.0 without Elasticsearch, for the exporter's tests.

argilla-server needs a search engine (Elasticsearch or OpenSearch), neither of which can be
installed here. It picks its engine from a registry by name, so this module registers an
in-memory one under `memory` before serving `argilla_server:app` with uvicorn. Everything the
exporter talks to (workspaces, datasets, fields, questions, metadata properties, record upserts,
responses, listing records) is argilla-server's own code over its own database; only search,
similarity search and progress figures come from the list kept here and are not real.

    ARGILLA_SEARCH_ENGINE=memory python scripts/argilla/serve.py --host 127.0.0.1 --port 6900
"""

import argparse
from typing import Dict, Iterable, List, Optional, Union
from uuid import UUID

import uvicorn
from argilla_server.search_engine.base import (
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    TermsMetrics,
)


@SearchEngine.register(engine_name="memory")
class MemorySearchEngine(SearchEngine):
    # Shared by every request's instance: the server makes a new engine per request.
    indexes: Dict[UUID, Dict[UUID, str]] = {}

    @classmethod
    async def new_instance(cls) -> "MemorySearchEngine":
        return cls()

    async def close(self):
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": "memory", "version": "0"}

    async def create_index(self, dataset):
        self.indexes.setdefault(dataset.id, {})

    async def delete_index(self, dataset):
        self.indexes.pop(dataset.id, None)

    async def configure_metadata_property(self, dataset, metadata_property):
        pass

    async def index_records(self, dataset, records: Iterable):
        index = self.indexes.setdefault(dataset.id, {})
        for record in records:
            index[record.id] = str(getattr(record, "status", "pending"))

    async def partial_record_update(self, record, **update):
        index = self.indexes.setdefault(record.dataset_id, {})
        if "status" in update:
            index[record.id] = str(update["status"])

    async def delete_records(self, dataset, records: Iterable):
        index = self.indexes.setdefault(dataset.id, {})
        for record in records:
            index.pop(record.id, None)

    async def update_record_response(self, response):
        pass

    async def delete_record_response(self, response):
        pass

    async def update_record_suggestion(self, suggestion):
        pass

    async def delete_record_suggestion(self, suggestion):
        pass

    def _progress(self, dataset) -> dict:
        if dataset.is_draft:
            return {}
        statuses = list(self.indexes.get(dataset.id, {}).values())
        counts: Dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        return {"total": len(statuses), **counts}

    async def get_dataset_progress(self, dataset) -> dict:
        return self._progress(dataset)

    async def get_dataset_user_progress(self, dataset, user) -> dict:
        return self._progress(dataset)

    async def search(self, dataset, query=None, filter=None, sort=None, offset: int = 0,
                     limit: int = 100, user_id: Optional[str] = None) -> SearchResponses:
        ids: List[UUID] = list(self.indexes.get(dataset.id, {}).keys())
        page = ids[offset:offset + limit]
        return SearchResponses(items=[SearchResponseItem(record_id=i, score=None) for i in page],
                               total=len(ids))

    async def compute_metrics_for(self, metadata_property):
        kind = str(getattr(metadata_property.type, "value", metadata_property.type))
        if kind == "integer":
            return IntegerMetadataMetrics()
        if kind == "float":
            return FloatMetadataMetrics()
        return TermsMetrics(total=0)

    async def similarity_search(self, dataset, vector_settings, value=None, record=None,
                                query=None, filter=None, max_results: int = 100, order=None,
                                threshold=None) -> SearchResponses:
        return SearchResponses(items=[], total=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6900)
    args = parser.parse_args()
    uvicorn.run("argilla_server:app", host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
