"""Response models of ``GET /v1/batches``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.schemas import StatusCounts

# The `status` filter: nothing started yet, not finished (queued or running), or finished.
ListingStatus = Literal["queued", "running", "done"]


# One count model for the listing and the status view.
ListingCounts = StatusCounts


class BatchListEntry(BaseModel):
    batch_id: str
    owner: str | None
    created_at: datetime = Field(description="RFC 3339, UTC")
    space: str
    dataset: str
    methods: list[str] = Field(description="method aliases in submission order")
    items: int = Field(description="items of the batch")
    counts: ListingCounts
    status: Literal["queued", "running", "done"] = Field(
        description="as getBatch says it: 'queued' while nothing has started, 'running' while anything is "
        "queued or running, else 'done'"
    )


class BatchList(BaseModel):
    items: list[BatchListEntry] = Field(description="newest first")
    next: str | None = Field(
        description="opaque cursor: pass it as `cursor` (with the same filters) for the next page; "
        "null on the last page"
    )
    limit: int
