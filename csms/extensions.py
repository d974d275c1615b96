"""Flask extensions, created once at import and bound to an app in `create_app`."""

from flask_migrate import Migrate
from flask_sock import Sock
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy

from csms.models.base import Base, render_item

db = SQLAlchemy(model_class=Base)
# Batch mode lets Alembic alter tables on SQLite, which has no ALTER COLUMN.
migrate = Migrate(render_as_batch=True, compare_type=True, render_item=render_item)
sock = Sock()
socketio = SocketIO()
