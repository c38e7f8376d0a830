"""evtrack in one page: params, a metric logged three times, an artifact written twice.

    python examples/quickstart.py

The store is ./evruns unless EVTRACK_TRACKING_URI says otherwise. Afterwards, look at it
with SQL:

    evtrack sql "select key, step, value from metrics order by step"
"""

import evtrack

evtrack.set_experiment("quickstart")

with evtrack.start_run(run_name="quickstart") as run:
    evtrack.log_params({"learning_rate": 0.01, "epochs": 3, "optimizer": "adam"})
    for epoch, loss in enumerate([0.9, 0.5, 0.3]):
        evtrack.log_metric("loss", loss, step=epoch)
    evtrack.log_text("first draft\n", "notes.txt")
    # Same path again: readers now see this version; the first stays in the event log.
    evtrack.log_text("loss went from 0.9 to 0.3 in 3 epochs\n", "notes.txt")

run_id = run.info.run_id
finished = evtrack.get_run(run_id)
history = evtrack.MlflowClient().get_metric_history(run_id, "loss")
versions = evtrack.sql(
    "select count(*) from events where kind = 'artifact' and run_id = ? and key = 'notes.txt'",
    [run_id],
).fetchall()[0][0]

print(f"store:       {evtrack.get_tracking_uri()}")
print(f"run:         {run_id} ({finished.info.run_name}, {finished.info.status})")
print(f"params:      {dict(sorted(finished.data.params.items()))}")
print(
    f"loss:        {[(m.step, m.value) for m in history]} -> latest {finished.data.metrics['loss']}"
)
print(f"notes.txt:   {versions} versions in the log")
