"""Peewee models of stored runs: one row per pushed run, one per container of a run.

The models are bound to ``database_proxy``; :func:`resmon.store.db.open_database` points it
at SQLite or PostgreSQL and :func:`resmon.store.db.migrate` creates or upgrades the tables.
Both the server and ``resmon query --db`` use these names; they are a contract.

A run keeps the run summary as received (``payload``, JSON text) and, next to it,
the columns a query filters or sorts on (scope, times, peak and p95 of CPU and
memory, the host's and the job's own), so history, trends and recommendations never have to parse every blob.

Every column that holds a payload's number holds any value the wire allows
(:data:`resmon.schema.MAX_NUMBER`, 2**62) as sent: whole numbers are BIGINT, fractions
DOUBLE (peewee's FloatField is PostgreSQL's 4-byte REAL, seven significant digits).
"""

from __future__ import annotations

from typing import Any

from peewee import (
    SQL,
    AutoField,
    BigAutoField,
    BigIntegerField,
    BlobField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
    TextField,
)

database_proxy = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database_proxy


class Run(BaseModel):
    """One pushed run summary of one job execution."""

    id = AutoField()
    organization = CharField(max_length=255)
    # Always the canonical "org/repo" spelling (resmon.tokens.canonical_repository):
    # a 255-character organization and a bare 255-character repository make 511.
    repository = CharField(max_length=511)
    workflow = CharField(max_length=255)
    job = CharField(max_length=255)
    run_id = CharField(max_length=255)
    run_attempt = CharField(max_length=255, default="")
    # The key as the client sent it; its uniqueness is per scope, in scoped_idempotency_key.
    idempotency_key = CharField(max_length=255, null=True)
    # SHA-256 of (scope, idempotency key) (resmon.store.derive.scoped_idempotency_key),
    # unique: a retried push with the same key in the same scope is stored once, and
    # another scope's push with that key is a run of its own (NULLs do not collide).
    scoped_idempotency_key = CharField(max_length=64, null=True, unique=True)
    # SHA-256 of the canonical payload: a reused key with another body is a conflict,
    # and so is another body for a run already stored (same run_key).
    body_sha256 = CharField(max_length=64)
    # SHA-256 of (scope, run_id, run_attempt, start_time): key-less retries are stored
    # once.  A hash rather than a unique index over the columns because start_time may
    # be NULL and NULLs never collide in a unique index (SQLite and PostgreSQL alike);
    # without a start time the body hash stands in for it.
    run_key = CharField(max_length=64, unique=True)
    received_at = DateTimeField(index=True)  # naive, UTC
    start_time = DateTimeField(null=True)  # naive, UTC
    end_time = DateTimeField(null=True)  # naive, UTC
    duration_seconds = DoubleField(null=True)
    sample_count = BigIntegerField(null=True)
    cpu_seconds = DoubleField(null=True)
    cpu_percent_peak = DoubleField(null=True)
    cpu_percent_p95 = DoubleField(null=True)
    mem_bytes_peak = BigIntegerField(null=True)
    mem_bytes_p95 = BigIntegerField(null=True)
    # Which wrapped step of the job the run was, from the summary's ``command``
    # (resmon.store.derive.command_columns): ``collect --name`` (``command`` by
    # default) and the command's base name.  NULL for a sidecar run and for a peer
    # that sends no ``command``.  Read with the runs of a job, so that two steps of
    # one job (``--name compile``, ``--name unit-tests``) are told apart.
    command_container = CharField(max_length=255, null=True)
    command_name = CharField(max_length=255, null=True)
    # The job's own figures (resmon.store.job_figures): the summary's ``job`` block,
    # else the wrapped command's container, else the sum over the containers.  The
    # cpu_percent_* and mem_bytes_* columns above are the host's (the whole machine).
    job_scope = CharField(max_length=16, null=True)  # "command" or "containers"
    job_cpu_cores_p95 = DoubleField(null=True)
    job_cpu_cores_peak = DoubleField(null=True)
    job_cpu_seconds = DoubleField(null=True)
    job_memory_bytes_p95 = BigIntegerField(null=True)
    job_memory_bytes_peak = BigIntegerField(null=True)
    job_memory_kind = CharField(max_length=16, null=True)  # pss, rss, cgroup or mixed
    job_memory_peak_low_bytes = BigIntegerField(null=True)
    job_memory_peak_high_bytes = BigIntegerField(null=True)
    job_limit_cpu_cores = DoubleField(null=True)
    job_limit_memory_bytes = BigIntegerField(null=True)
    payload = TextField()  # the run_summary object as JSON text
    # Live runs (schema version 7, resmon.store.live): ``running`` while the collector
    # streams batches, ``finished`` once its final push is stored (every pushed run,
    # and every run stored before version 7), ``lost`` when its batches stopped
    # without a final push: its summary then is the server's, from the stored
    # samples, and ``partial`` is true.
    state = CharField(max_length=16, default="finished")
    partial = BooleanField(default=False)
    # SHA-256 of (scope, the collector's run_key uuid) (resmon.store.derive.live_key):
    # the batches and the final push of one collect run find its row by it.  Per
    # scope, as idempotency keys are: one scope can neither block nor probe another's.
    live_key = CharField(max_length=64, null=True, unique=True)
    host = CharField(max_length=255, null=True)  # RUNNER_NAME, else the hostname
    live_interval_seconds = DoubleField(null=True)
    last_batch_at = DateTimeField(null=True)  # naive, UTC: when the last batch was stored
    snapshot = TextField(null=True)  # the latest live sample, JSON text
    # The run's context (schema version 11, resmon.store.run_context): from the
    # summary's ``context``, NULL when the collector sent none (the Go collector).
    git_ref = CharField(max_length=255, null=True)
    branch = CharField(max_length=255, null=True)
    commit_sha = CharField(max_length=255, null=True)
    event_name = CharField(max_length=255, null=True)
    runner_name = CharField(max_length=255, null=True)
    runner_labels = CharField(max_length=255, null=True)
    pod_name = CharField(max_length=255, null=True)
    pod_namespace = CharField(max_length=255, null=True)
    node_name = CharField(max_length=255, null=True)
    # The job's disk I/O and network (schema version 12, resmon.store.io_columns): bytes
    # read and written and their source (cgroup, blkio, proc or mixed), bytes received
    # and sent without loopback; NULL when the summary has none (the Go collector).
    job_io_read_bytes = BigIntegerField(null=True)
    job_io_write_bytes = BigIntegerField(null=True)
    job_io_source = CharField(max_length=16, null=True)
    job_net_rx_bytes = BigIntegerField(null=True)
    job_net_tx_bytes = BigIntegerField(null=True)

    class Meta:
        table_name = "runs"
        # Only what a query uses (EXPLAIN QUERY PLAN of resmon.store.history and the query
        # API): every index is one more B-tree each push updates under the write lock.
        # received_at alone serves top() over a period across all jobs.  The branch one
        # serves a job's runs and trend on one branch (schema version 11).
        indexes = (
            (("organization", "repository", "workflow", "job", "received_at"), False),
            (("organization", "repository", "workflow", "job", "branch", "received_at"), False),
        )


class ContainerStat(BaseModel):
    """Statistics of one container (or process group) within one run."""

    id = AutoField()
    run = ForeignKeyField(Run, backref="containers", on_delete="CASCADE", index=True)
    name = CharField(max_length=255)
    cpu_cores_peak = DoubleField(null=True)
    cpu_cores_p99 = DoubleField(null=True)
    cpu_cores_p95 = DoubleField(null=True)
    cpu_cores_p75 = DoubleField(null=True)
    cpu_cores_p50 = DoubleField(null=True)
    cpu_cores_avg = DoubleField(null=True)
    memory_bytes_peak = BigIntegerField(null=True)
    memory_bytes_p99 = BigIntegerField(null=True)
    memory_bytes_p95 = BigIntegerField(null=True)
    memory_bytes_p75 = BigIntegerField(null=True)
    memory_bytes_p50 = BigIntegerField(null=True)
    memory_bytes_avg = DoubleField(null=True)
    cpu_seconds = DoubleField(null=True)
    limit_cpu_cores = DoubleField(null=True)
    limit_memory_bytes = BigIntegerField(null=True)
    cpu_throttled_seconds = DoubleField(null=True)
    oom_kills = BigIntegerField(null=True)

    class Meta:
        table_name = "run_containers"
        indexes = ((("name", "run"), False),)


class RunRegression(BaseModel):
    """One figure of a run flagged as a regression when it was pushed: the figure, and the
    baseline it was compared with (:mod:`resmon.store.baseline`).  ``container`` is None
    for the job's own figures."""

    id = AutoField()
    run = ForeignKeyField(Run, backref="regressions", on_delete="CASCADE", index=True)
    # The run's received_at, copied: the list of flagged runs is asked by time.
    received_at = DateTimeField(index=True)  # naive, UTC
    container = CharField(max_length=255, null=True)
    metric = CharField(max_length=32)
    value = DoubleField()
    median = DoubleField()
    mad = DoubleField()
    baseline_runs = IntegerField()
    change = DoubleField(null=True)  # (value - median) / median
    # Which test flagged it (resmon.analysis.regressions): "single", the run alone, or
    # "shift", the median of the last ``runs`` runs (this one included) against the
    # runs before them.  Schema version 8; rows of before are backfilled.
    # The database's defaults too, as version 8's ADD COLUMN has them.
    test = CharField(max_length=16, default="single", constraints=[SQL("DEFAULT 'single'")])
    runs = IntegerField(default=1, constraints=[SQL("DEFAULT 1")])

    class Meta:
        table_name = "run_regressions"


# The runs still running, by their last batch: the lost-run check and the live view
# read them through this partial index, which holds only the (few) running runs.
Run.add_index(
    Run.index(Run.last_batch_at, name="run_running_last_batch", where=(Run.state == "running"))
)


class RunBatch(BaseModel):
    """One live batch of one run, as received: its samples as compressed JSON
    (:mod:`resmon.store.samples`), one row per batch, stored once per (run, seq)."""

    id = AutoField()
    run = ForeignKeyField(Run, backref="batches", on_delete="CASCADE", index=False)
    seq = BigIntegerField()
    first_t = DateTimeField()  # naive, UTC: the batch's first and last sample times
    last_t = DateTimeField()
    sample_count = IntegerField()
    body_sha256 = CharField(max_length=64)  # of the samples: a reused seq with others is refused
    samples = BlobField()  # zlib-compressed JSON array of the batch's samples
    received_at = DateTimeField()  # naive, UTC

    class Meta:
        table_name = "run_batches"
        indexes = ((("run", "seq"), True),)


class EventIdField(BigAutoField):
    """BIGSERIAL on PostgreSQL; on SQLite ``INTEGER PRIMARY KEY AUTOINCREMENT``, whose ids
    are never reused, not even once retention deleted every event (a plain rowid
    restarts after the largest): an SSE client resuming from an old id misses nothing."""

    def ddl(self, ctx: Any) -> Any:
        node = super().ddl(ctx)
        if isinstance(self.model._meta.database.obj, SqliteDatabase):
            return NodeList((node, SQL("AUTOINCREMENT")))
        return node


class Event(BaseModel):
    """One event (run_started, snapshot, run_finished, run_lost, regression, ...),
    appended in the transaction of the write that caused it (:mod:`resmon.store.events`).
    Its id is the SSE ``id:``; ids are the database's, monotonic on one database."""

    id = EventIdField()
    created_at = DateTimeField(index=True)  # naive, UTC; retention deletes by it
    kind = CharField(max_length=32)
    organization = CharField(max_length=255)
    repository = CharField(max_length=511)
    workflow = CharField(max_length=255)
    job = CharField(max_length=255)
    run_pk = BigIntegerField(null=True)  # runs.id, not a foreign key: events outlive runs
    data = TextField()  # a JSON object, the event's body

    class Meta:
        table_name = "events"


class SchemaVersion(BaseModel):
    """A single row: the schema version the database has been migrated to."""

    version = IntegerField()

    class Meta:
        table_name = "schema_version"
        primary_key = False


class RunStep(BaseModel):
    """One step of a run made of several ``resmon collect --step NAME -- CMD`` pushes
    (schema version 11, :mod:`resmon.store.steps`): its own figures and its summary
    as pushed.  Stored once per ``step_key`` (scope, run id, attempt, name, start) and
    per scoped idempotency key, as a run is."""

    id = AutoField()
    run = ForeignKeyField(Run, backref="steps", on_delete="CASCADE", index=True)
    name = CharField(max_length=255)
    step_key = CharField(max_length=64, unique=True)
    scoped_idempotency_key = CharField(max_length=64, null=True, unique=True)
    body_sha256 = CharField(max_length=64)
    received_at = DateTimeField()  # naive, UTC
    start_time = DateTimeField(null=True)  # naive, UTC
    end_time = DateTimeField(null=True)
    duration_seconds = DoubleField(null=True)
    sample_count = BigIntegerField(null=True)
    cpu_seconds = DoubleField(null=True)
    memory_bytes_peak = BigIntegerField(null=True)
    memory_kind = CharField(max_length=16, null=True)
    exit_code = IntegerField(null=True)
    # The step's disk and network bytes, where its collector measured them (job.io,
    # job.network of its summary).
    disk_read_bytes = BigIntegerField(null=True)
    disk_write_bytes = BigIntegerField(null=True)
    net_rx_bytes = BigIntegerField(null=True)
    net_tx_bytes = BigIntegerField(null=True)
    payload = TextField()  # the step's run summary as JSON text

    class Meta:
        table_name = "run_steps"


# --- alerts (schema version 10, resmon.store.alerts) ----------------------------


class AlertRule(BaseModel):
    """An alert rule: a scope pattern (``*`` matches any run of characters), a CPU and a
    memory threshold, each a percent of the limit or an absolute figure
    (:mod:`resmon.analysis.alert_machine`), and the consecutive breaches that change a
    state.  ``container`` NULL watches the job's own figures, a pattern its containers.
    ``source`` is ``file`` (``serve --alert-rules``, replaced when the file changes) or
    ``api`` (the admin API)."""

    id = AutoField()
    name = CharField(max_length=255, unique=True)
    source = CharField(max_length=8)
    enabled = BooleanField(default=True)
    evaluate_on = CharField(max_length=8, default="runs")  # runs or samples
    organization = CharField(max_length=255, default="*")
    repository = CharField(max_length=511, default="*")
    workflow = CharField(max_length=255, default="*")
    job = CharField(max_length=255, default="*")
    container = CharField(max_length=255, null=True)
    cpu_threshold_kind = CharField(max_length=8, null=True)  # percent or cores
    cpu_threshold_value = DoubleField(null=True)
    mem_threshold_kind = CharField(max_length=8, null=True)  # percent or bytes
    mem_threshold_value = DoubleField(null=True)
    consecutive = IntegerField(default=3)
    created_at = DateTimeField()  # naive, UTC
    updated_at = DateTimeField()

    class Meta:
        table_name = "alert_rules"


class AlertState(BaseModel):
    """The state of one rule for one matched job and container (``container`` empty:
    the job's own figures).  ``target_key`` is a hash of the rule, scope and container,
    unique: the evaluator finds and upserts a state by it."""

    id = AutoField()
    rule = ForeignKeyField(AlertRule, backref="states", on_delete="CASCADE", index=False)
    target_key = CharField(max_length=64, unique=True)
    organization = CharField(max_length=255)
    repository = CharField(max_length=511)
    workflow = CharField(max_length=255)
    job = CharField(max_length=255)
    container = CharField(max_length=255, default="")
    state = CharField(max_length=16, default="normal")
    cpu_consecutive_breaches = IntegerField(default=0)
    mem_consecutive_breaches = IntegerField(default=0)
    # Observations in a row without a breach while alerting: the way back to normal.
    cpu_consecutive_clear = IntegerField(default=0)
    mem_consecutive_clear = IntegerField(default=0)
    cpu_value = DoubleField(null=True)  # the last figures seen: cores, bytes
    cpu_limit = DoubleField(null=True)
    mem_value = DoubleField(null=True)
    mem_limit = DoubleField(null=True)
    last_run = BigIntegerField(null=True)  # runs.id of the last observation
    last_alerted_at = DateTimeField(null=True)  # naive, UTC: the last state change
    created_at = DateTimeField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "alert_states"
        indexes = ((("rule", "organization"), False), (("organization", "updated_at"), False))


class AlertCursor(BaseModel):
    """Where a background reader of the events table is (one row per reader): every
    event id at or below ``last_event_id`` has been evaluated.  ``owner`` holds the
    reading until ``lease_until`` (naive, UTC), so the other workers and replicas do
    not do the same work only to lose the cursor's conditional UPDATE."""

    name = CharField(max_length=32, primary_key=True)
    last_event_id = BigIntegerField(default=0)
    owner = CharField(max_length=128, null=True)
    lease_until = DateTimeField(null=True)
    updated_at = DateTimeField()

    class Meta:
        table_name = "alert_cursor"


class WebhookOutbox(BaseModel):
    """One webhook delivery of one event to one target, kept until delivered (at least
    once, across restarts): written with the event, sent by a background thread."""

    id = BigAutoField()
    event_id = BigIntegerField()
    target = TextField()
    body = TextField()  # the JSON text sent, as signed
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField()  # naive, UTC
    delivered_at = DateTimeField(null=True)
    last_error = TextField(null=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "webhook_outbox"


# The deliveries still due, by their next attempt: the sender reads them through this
# partial index, which holds only the undelivered rows.
WebhookOutbox.add_index(
    WebhookOutbox.index(
        WebhookOutbox.next_attempt_at,
        name="webhook_outbox_due",
        where=WebhookOutbox.delivered_at.is_null(),
    )
)

ALERT_MODELS: tuple[type[Model], ...] = (AlertRule, AlertState, AlertCursor, WebhookOutbox)


# --- rollups (schema version 9, resmon.store.rollups) ---------------------------


class RollupJob(BaseModel):
    """One job's runs received in one hour or one UTC day (``span`` hour or day), or
    started in one UTC day (``rday``, what a trend by day shows): counts, sums (an
    average is ``_sum / _n``, ``_n`` the runs that had the figure) and maxima of the
    job's and the host's figures, OOM kills and throttled seconds of its containers.
    Written by :mod:`resmon.store.rollups` from the runs, never by a push."""

    id = BigAutoField()
    span = CharField(max_length=4)  # hour, day (received then) or rday (started that day)
    bucket = DateTimeField()  # naive, UTC: the hour's or the day's start
    organization = CharField(max_length=255)
    repository = CharField(max_length=511)
    workflow = CharField(max_length=255)
    job = CharField(max_length=255)
    runs = BigIntegerField()
    partial_runs = BigIntegerField()
    last_run_pk = BigIntegerField(null=True)
    duration_seconds_sum = DoubleField(null=True)
    duration_seconds_n = BigIntegerField()
    duration_seconds_max = DoubleField(null=True)
    job_cpu_seconds_sum = DoubleField(null=True)
    job_cpu_seconds_n = BigIntegerField()
    job_cpu_cores_p95_sum = DoubleField(null=True)
    job_cpu_cores_p95_n = BigIntegerField()
    job_cpu_cores_p95_max = DoubleField(null=True)
    job_cpu_cores_peak_max = DoubleField(null=True)
    job_memory_bytes_peak_sum = DoubleField(null=True)
    job_memory_bytes_peak_n = BigIntegerField()
    job_memory_bytes_peak_max = BigIntegerField(null=True)
    job_memory_bytes_p95_sum = DoubleField(null=True)
    job_memory_bytes_p95_n = BigIntegerField()
    job_memory_byte_seconds = DoubleField(null=True)  # sum of memory peak x duration
    job_memory_kind_min = CharField(max_length=16, null=True)
    job_memory_kind_max = CharField(max_length=16, null=True)
    cpu_seconds_sum = DoubleField(null=True)
    cpu_seconds_n = BigIntegerField()
    cpu_percent_p95_sum = DoubleField(null=True)
    cpu_percent_p95_n = BigIntegerField()
    mem_bytes_peak_max = BigIntegerField(null=True)
    mem_bytes_p95_sum = DoubleField(null=True)
    mem_bytes_p95_n = BigIntegerField()
    oom_kills = BigIntegerField()
    cpu_throttled_seconds = DoubleField()
    # The other maxima a trend by day shows (span ``rday``).
    job_cpu_seconds_max = DoubleField(null=True)
    job_memory_bytes_p95_max = BigIntegerField(null=True)
    job_limit_cpu_cores_max = DoubleField(null=True)
    job_limit_memory_bytes_max = BigIntegerField(null=True)
    cpu_percent_p95_max = DoubleField(null=True)
    cpu_percent_peak_max = DoubleField(null=True)
    mem_bytes_p95_max = BigIntegerField(null=True)

    class Meta:
        table_name = "rollup_jobs"
        # Every read of a period takes a range of (span, bucket); a pass replaces one
        # job's bucket.  The second covers the jobs list (each job's run count and last
        # run over its daily rows, in order, from the index alone: 37 -> 17 ms at 200
        # jobs x 91 days).
        indexes = (
            (("span", "bucket", "organization", "repository", "workflow", "job"), True),
            (
                ("span", "organization", "repository", "workflow", "job", "runs", "last_run_pk"),
                False,
            ),
        )


class RollupContainer(BaseModel):
    """One container of one job over the runs received in one hour or day."""

    id = BigAutoField()
    span = CharField(max_length=4)
    bucket = DateTimeField()
    organization = CharField(max_length=255)
    repository = CharField(max_length=511)
    workflow = CharField(max_length=255)
    job = CharField(max_length=255)
    name = CharField(max_length=255)
    runs = BigIntegerField()
    partial_runs = BigIntegerField()
    duration_seconds_sum = DoubleField(null=True)
    cpu_seconds_sum = DoubleField(null=True)
    cpu_seconds_n = BigIntegerField()
    cpu_cores_p95_sum = DoubleField(null=True)
    cpu_cores_p95_n = BigIntegerField()
    cpu_cores_p95_max = DoubleField(null=True)
    cpu_cores_peak_max = DoubleField(null=True)
    memory_bytes_peak_sum = DoubleField(null=True)
    memory_bytes_peak_n = BigIntegerField()
    memory_bytes_peak_max = BigIntegerField(null=True)
    memory_byte_seconds = DoubleField(null=True)
    limit_cpu_cores_max = DoubleField(null=True)
    limit_memory_bytes_max = BigIntegerField(null=True)
    oom_kills = BigIntegerField()
    cpu_throttled_seconds = DoubleField()
    duration_seconds_n = BigIntegerField(default=0)
    memory_bytes_p95_max = BigIntegerField(null=True)

    class Meta:
        table_name = "rollup_containers"
        indexes = (
            (("span", "bucket", "organization", "repository", "workflow", "job", "name"), True),
        )


class RollupRun(BaseModel):
    """Where a run was last counted (its received_at then): a run whose row changes
    (a lost run finished, a step pushed) leaves that bucket, which is recomputed."""

    run_pk = BigIntegerField(primary_key=True)
    received_at = DateTimeField()
    run_time = DateTimeField(null=True)  # its start time, else received_at: its rday

    class Meta:
        table_name = "rollup_runs"


class RollupCursor(BaseModel):
    """The background loops' progress: ``rollups`` is the last event id applied."""

    name = CharField(max_length=32, primary_key=True)
    last_event_id = BigIntegerField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "rollup_cursor"


ROLLUP_MODELS: tuple[type[Model], ...] = (RollupJob, RollupContainer, RollupRun, RollupCursor)


MODELS: tuple[type[Model], ...] = (
    Run,
    ContainerStat,
    RunRegression,
    RunBatch,
    Event,
    RunStep,
    *ALERT_MODELS,
    *ROLLUP_MODELS,
)
