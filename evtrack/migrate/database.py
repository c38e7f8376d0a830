"""Read an MLflow database (any URI MLflow accepts: ``sqlite:///mlflow.db``,
``postgresql://…``, ``mysql+pymysql://…``, ``mssql+pyodbc://…``) through SQLAlchemy,
with MLflow's schema (tables ``experiments``, ``experiment_tags``, ``runs``, ``params``,
``tags``, ``metrics``). Needs ``pip install 'evtrack[migrate]'`` plus the database's
driver; MLflow itself is not needed.

Metric histories are read one indexed query per run, on a connection of the reading
thread's own: through ADBC into Arrow for SQLite when ``adbc-driver-sqlite`` is installed
(part of the ``migrate`` extra; ~3 M rows/s here, the same per run, per batch of runs or
as one table scan), else with the raw DB-API cursor (SQLAlchemy's row objects would cost
more than the database).
As MLflow stores them: NaN comes back as NaN (``is_nan``), and ±inf as ±1.797e308,
because that is what MLflow wrote and what MLflow itself returns.

Only tested here against SQLite; the queries are plain SQL over MLflow's own schema.
"""

from __future__ import annotations

import threading
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.migrate.source import (
    SourceExperiment,
    SourceRun,
    local_artifact_files,
    status_name,
)

__all__ = ["DatabaseSource"]


class DatabaseSource:
    """An MLflow tracking database, read-only."""

    def __init__(self, uri: str) -> None:
        try:
            import sqlalchemy
        except ImportError as exc:
            raise InvalidParameterValue(
                f"Reading {uri!r} needs SQLAlchemy: pip install 'evtrack[migrate]'."
            ) from exc
        self.uri = uri
        if uri.startswith("sqlite:///"):
            import os

            path = uri[len("sqlite:///") :]
            if not os.path.isfile(path):  # SQLite would create an empty database there
                raise InvalidParameterValue(f"No MLflow database at {uri!r}: no such file.")
        try:
            self.engine = sqlalchemy.create_engine(uri)
            self._raw = self.engine.raw_connection()
        except Exception as exc:  # the driver's own error types vary by database
            raise InvalidParameterValue(f"Cannot open the MLflow database {uri!r}: {exc}") from exc
        self._base = None
        if uri.startswith("sqlite:///"):
            import os

            self._base = os.path.dirname(os.path.abspath(uri[len("sqlite:///") :]))
        self._param = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._check_schema()
        # Metric histories are read on the importer's prefetch thread: each thread gets a
        # connection of its own (sqlite3's refuse to cross threads), all closed at the end.
        self._local = threading.local()
        self._opened: list[Any] = []
        self._opened_lock = threading.Lock()

    def _metrics_cursor(self) -> Any:
        """A cursor of this thread's connection for metric histories. SQLite histories
        go straight into Arrow through ADBC when it is installed (5x faster than DB-API
        rows); every other database, and SQLite without it, uses SQLAlchemy's DB-API
        connection."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = None
            if self._base is not None:
                try:
                    import adbc_driver_sqlite.dbapi as adbc
                except ImportError:  # optional: the DB-API path reads SQLite too
                    pass
                else:
                    con = adbc.connect(self.uri[len("sqlite:///") :])
            if con is None:
                con = self.engine.raw_connection()
            self._local.con = con
            with self._opened_lock:
                self._opened.append(con)
        return con.cursor()

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        cur = self._raw.cursor()
        try:
            cur.execute(sql.replace("?", self._param), args)
            return list(cur.fetchall())
        finally:
            cur.close()

    def _check_schema(self) -> None:
        try:
            self._rows("select experiment_id from experiments where 1 = 0")
            self._rows("select run_uuid from runs where 1 = 0")
        except Exception as exc:
            raise InvalidParameterValue(
                f"{self.uri!r} is not an MLflow tracking database (no experiments/runs "
                f"tables): {exc}"
            ) from exc

    def experiments(self) -> list[SourceExperiment]:
        tags: dict[str, dict[str, str]] = {}
        for key, value, exp_id in self._rows(
            "select key, value, experiment_id from experiment_tags"
        ):
            tags.setdefault(str(exp_id), {})[key] = value or ""
        return [
            SourceExperiment(
                experiment_id=str(exp_id),
                name=name,
                artifact_location=location or "",
                lifecycle_stage=stage or "active",
                tags=tags.get(str(exp_id), {}),
                creation_time=created,
                last_update_time=updated,
            )
            for exp_id, name, location, stage, created, updated in self._rows(
                "select experiment_id, name, artifact_location, lifecycle_stage, "
                "creation_time, last_update_time from experiments order by experiment_id"
            )
        ]

    def runs(self, experiment_id: str) -> list[SourceRun]:
        exp = int(experiment_id)
        runs = {
            row[0]: SourceRun(
                run_id=row[0],
                experiment_id=experiment_id,
                run_name=row[1] or "",
                user_id=row[2] or "",
                status=status_name(row[3]),
                start_time=row[4],
                end_time=row[5],
                lifecycle_stage=row[6] or "active",
                artifact_uri=row[7] or "",
            )
            for row in self._rows(
                "select run_uuid, name, user_id, status, start_time, end_time, "
                "lifecycle_stage, artifact_uri from runs where experiment_id = ? "
                "order by start_time, run_uuid",
                (exp,),
            )
        }
        in_exp = "select run_uuid from runs where experiment_id = ?"
        for table, attr in (("params", "params"), ("tags", "tags")):
            for key, value, run_id in self._rows(
                f"select key, value, run_uuid from {table} where run_uuid in ({in_exp})", (exp,)
            ):
                run = runs.get(run_id)
                if run is not None:
                    getattr(run, attr)[key] = value if value is not None else ""
        return list(runs.values())

    def metric_counts(self, run: SourceRun) -> dict[str, int]:
        return dict(
            self._rows(
                "select key, count(*) from metrics where run_uuid = ? group by key", (run.run_id,)
            )
        )

    def _metric_table(self, run_id: str) -> Any:
        """``key, step, timestamp, value, is_nan`` of one run as an Arrow table."""
        import pyarrow as pa

        sql = "select key, step, timestamp, value, is_nan from metrics where run_uuid = ?"
        cur = self._metrics_cursor()
        try:
            if hasattr(cur, "fetch_arrow_table"):  # ADBC
                cur.execute(sql, (run_id,))
                return cur.fetch_arrow_table()
            cur.execute(sql.replace("?", self._param), (run_id,))
            rows = cur.fetchall()
        finally:
            cur.close()
        cols = list(zip(*rows)) if rows else [(), (), (), (), ()]
        return pa.table(
            {
                "key": pa.array(cols[0], pa.string()),
                "step": pa.array(cols[1], pa.int64()),
                "timestamp": pa.array(cols[2], pa.int64()),
                "value": pa.array(cols[3], pa.float64()),
                "is_nan": pa.array([bool(x) for x in cols[4]], pa.bool_()),
            }
        )

    def metrics(self, run: SourceRun) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            table = self._metric_table(run.run_id)
            if table.num_rows == 0:
                return {}
            nan = pc.cast(table["is_nan"], pa.bool_())
            value = pc.cast(table["value"], pa.float64())
            table = pa.table(
                {
                    "key": table["key"],
                    "step": pc.cast(table["step"], pa.int64()),
                    "timestamp": pc.cast(table["timestamp"], pa.int64()),
                    "value": pc.if_else(nan, pa.scalar(float("nan")), value),
                }
            )
        except (OSError, ValueError, TypeError, pa.ArrowException) as exc:  # a damaged row
            raise InvalidParameterValue(
                f"Cannot read the metric history of run {run.run_id!r} from {self.uri!r}: "
                f"{exc}. Fix that run's rows in MLflow's metrics table (value, step and "
                "timestamp must be numbers), or leave its experiment out (--experiment)."
            ) from exc
        table = table.sort_by(
            [("key", "ascending"), ("step", "ascending"), ("timestamp", "ascending")]
        )
        counts = pc.value_counts(table["key"])  # in order of first appearance: sorted
        out, offset = {}, 0
        for key, n in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        ):
            out[key] = table.slice(offset, n).select(["step", "timestamp", "value"])
            offset += n
        return out

    def artifact_files(self, run: SourceRun):
        return local_artifact_files(run.artifact_uri, self._base)

    def close(self) -> None:
        for con in self._opened:
            con.close()
        self._opened.clear()
        self._raw.close()
        self.engine.dispose()
