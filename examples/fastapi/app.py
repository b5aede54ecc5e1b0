"""The seed's tasks API, after extauthz: no JWT code left in the backend.

extauthz (behind Envoy, Istio or nginx) has already verified the Better Auth token and
checked that the {user_id} in the path is the caller's own uuid. It injects the
caller's identity as headers and strips any copies the client sent, so the backend
only reads them. Never expose this app without the proxy in front of it.

Run: uvicorn app:app --host 127.0.0.1 --port 8000
"""

import os
from dataclasses import dataclass
from itertools import count
from threading import Lock
from uuid import UUID

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel

app = FastAPI(title="tasks")
# Browsers send a CORS preflight (OPTIONS, no token) before cross-origin API calls;
# extauthz lets it through (cors.allowPreflight) and this answers it.
app.add_middleware(
    CORSMiddleware,
    allow_origins=os.environ.get("CORS_ORIGINS", "http://localhost:3000,http://127.0.0.1:3000").split(","),
    allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    allow_headers=["Authorization", "Content-Type"],
)


@dataclass(frozen=True)
class CurrentUser:
    id: str  # Better Auth's user id (the token's sub)
    uuid: UUID  # the application's id, used by every foreign key
    email: str | None


def get_current_user(
    x_user_id: str = Header(),
    x_user_uuid: str = Header(),
    x_user_email: str | None = Header(default=None),
) -> CurrentUser:
    """Replaces the seed's JWT-verifying dependency: the proxy did the work."""
    try:
        return CurrentUser(id=x_user_id, uuid=UUID(x_user_uuid), email=x_user_email)
    except ValueError:
        raise HTTPException(status_code=401, detail="bad identity header")


class TaskIn(BaseModel):
    title: str


class Task(TaskIn):
    id: int
    owner: UUID


_tasks: dict[UUID, list[Task]] = {}
_ids = count(1)
_lock = Lock()


def _owner(user_id: UUID, user: CurrentUser) -> UUID:
    # Defence in depth: extauthz already enforced this, compared as UUIDs.
    if user_id != user.uuid:
        raise HTTPException(status_code=403, detail="not your tasks")
    return user.uuid


@app.get("/api/{user_id}/tasks")
def list_tasks(user_id: UUID, user: CurrentUser = Depends(get_current_user)):
    owner = _owner(user_id, user)
    with _lock:
        tasks = list(_tasks.get(owner, []))
    return {"user": {"id": user.id, "uuid": str(user.uuid), "email": user.email}, "tasks": tasks}


@app.post("/api/{user_id}/tasks", status_code=201)
def create_task(user_id: UUID, task: TaskIn, user: CurrentUser = Depends(get_current_user)) -> Task:
    owner = _owner(user_id, user)
    with _lock:
        t = Task(id=next(_ids), owner=owner, title=task.title)
        _tasks.setdefault(owner, []).append(t)
    return t


@app.get("/healthz")
def healthz():
    return {"ok": True}
