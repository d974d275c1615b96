"""One page of a query, as every list in the API returns it: `{items, total, page, perPage}`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from csms.extensions import db


def paginate(query: Any, order_by: Any, args: dict, *, scalars: bool = True) -> dict:
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(order_by).offset((args["page"] - 1) * args["per_page"]).limit(args["per_page"])
    items = db.session.scalars(page).all() if scalars else db.session.execute(page).all()
    return {"items": items, "total": total, "page": args["page"], "per_page": args["per_page"]}
