"""The Monitoring page's sections: each reads one core.reports.monitoring function and renders it."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from core.errors import StudioError
from core.jobs import lifecycle as jobs
from core.models import JobStatus
from core.reports import monitoring
from ui.auth import fragment, guard
from ui.feedback import job_action, show_flash
from ui.text import literal

REFRESH_S = 5
_ACTION_ERROR = "monitoring.action_error"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def _show_action_error() -> None:
    show_flash(_ACTION_ERROR)


def queues_section() -> None:
    st.subheader("Queues")
    try:
        stats = monitoring.queue_stats()
    except StudioError as error:
        st.error(literal(error))
        return
    columns = st.columns(len(stats))
    for column, stat in zip(columns, stats, strict=True):
        column.metric(f"{stat.name} · ready", stat.ready,
                      help="Messages waiting in Redis for a worker to fetch them.")
        column.caption(f"in flight {stat.in_flight} · delayed {stat.delayed} · dead {stat.dead} · "
                       f"oldest queued job {_age(stat.oldest_queued_age_s)}")


def workers_section() -> None:
    st.subheader("Workers")
    try:
        workers = monitoring.worker_stats()
    except StudioError as error:
        st.error(literal(error))
        return
    if not workers:
        st.info("No worker is running. Start them with `python -m workers run`.")
        return
    st.dataframe(
        [{"state": w.state, "host": w.host, "pid": w.pid, "queues": ", ".join(w.queues), "threads": w.threads,
          "last heartbeat": f"{_age(w.heartbeat_age_s)} ago", "running jobs": len(w.jobs)} for w in workers],
        hide_index=True, key="monitoring.workers",
    )
    lost = [w for w in workers if w.state == "lost"]
    if lost:
        st.warning(f"{len(lost)} worker(s) lost: " + ", ".join(f"{w.host}:{w.pid}" for w in lost)
                   + ". Their running jobs are redelivered once their lease expires.")
    for worker in workers:
        for job in worker.jobs:
            left, middle, right = st.columns([3, 3, 1])
            left.write(f"`{job.id[:8]}` {job.kind} on {worker.host}:{worker.pid}")
            middle.progress(min(max(job.progress, 0.0), 1.0))
            right.button("Cancel", key=f"monitoring.cancel.{job.id}", on_click=guard(job_action),
                         args=(_ACTION_ERROR, jobs.cancel_job, job.id))
    _show_action_error()


@fragment(run_every=REFRESH_S)
def live_queues_and_workers() -> None:
    queues_section()
    workers_section()


def _bar(kinds: list[str], values: list[float], title: str, fmt: str) -> go.Figure:
    """Bars of counts or rates, on an axis from 0 (left to autorange, all-zero bars get one from −1)
    with headroom for the values written above the bars."""
    figure = go.Figure(go.Bar(x=kinds, y=values, texttemplate=fmt, textposition="outside"))
    figure.update_layout(title=title, height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_yaxes(range=[0, max(values, default=0.0) * 1.2 or 1.0], rangemode="nonnegative")
    return figure


def jobs_section() -> None:
    st.subheader("Jobs")
    window = st.segmented_control("Window", list(monitoring.WINDOWS), default="24h",
                                  key="monitoring.window") or "24h"
    stats = monitoring.job_stats(window)
    if not stats.kinds:
        st.info(f"No job finished in the last {window}.")
    else:
        kinds = [k.kind for k in stats.kinds]
        left, right = st.columns(2)
        left.plotly_chart(_bar(kinds, [k.throughput_per_hour for k in stats.kinds], "Finished per hour", "%{y:.2f}"),
                          key="monitoring.throughput")
        right.plotly_chart(_bar(kinds, [k.failure_rate * 100 for k in stats.kinds], "Failure rate (%)", "%{y:.1f}"),
                           key="monitoring.failure_rate")
        st.dataframe(
            [{"kind": k.kind, "succeeded": k.succeeded, "failed": k.failed, "cancelled": k.cancelled,
              "failure rate": f"{k.failure_rate:.1%}", "per hour": round(k.throughput_per_hour, 2),
              "p50 (s)": None if k.p50_s is None else round(k.p50_s, 2),
              "p95 (s)": None if k.p95_s is None else round(k.p95_s, 2), "sample": k.sample}
             for k in stats.kinds],
            hide_index=True, key="monitoring.kinds",
        )
    failures_section()


def failures_section() -> None:
    st.markdown("**Latest failures**")
    failures = monitoring.latest_failures(limit=10)
    if not failures:
        st.caption("No failed job.")
    for failure in failures:
        left, right = st.columns([6, 1])
        when = f"{failure.finished_at:%Y-%m-%d %H:%M:%S} UTC" if failure.finished_at else "—"
        left.markdown(f"`{failure.id[:8]}` **{failure.kind}** at stage *{literal(failure.stage or 'run')}* · {when}")
        left.caption(literal(failure.error or "(no error message)"))
        if failure.status in (JobStatus.FAILED, JobStatus.CANCELLED):  # retried ones leave this list
            right.button("Retry", key=f"monitoring.retry.{failure.id}", on_click=guard(job_action),
                         args=(_ACTION_ERROR, jobs.retry_job, failure.id))
    _show_action_error()


def health_section() -> None:
    st.subheader("Health")
    report = monitoring.health()
    columns = st.columns(len(report.checks))
    for column, check in zip(columns, report.checks, strict=True):
        column.metric(check.name, "up" if check.ok else "DOWN", f"{check.latency_ms:.0f} ms", delta_color="off")
        if not check.ok:
            column.error(literal(check.detail))
    st.dataframe(
        [{"folder": d.name, "path": d.path, "free": _gib(d.free_bytes), "total": _gib(d.total_bytes),
          "used": f"{d.used_fraction:.0%}"} for d in report.disks],
        hide_index=True, key="monitoring.disks",
    )


def hardware_section() -> None:
    st.subheader("Hardware")
    hw = monitoring.hardware()
    cpu, ram = st.columns(2)
    cpu.metric(f"CPU ({hw.cpu_count} cores)", f"{hw.cpu_percent:.0f} %")
    ram.metric("RAM", f"{_gib(hw.ram_used_bytes)} / {_gib(hw.ram_total_bytes)}")
    if not hw.gpus:
        st.info(f"No GPU: {literal(hw.no_gpu_reason)}. GPU jobs need a worker on a machine with one.")
        return
    for gpu in hw.gpus:
        st.markdown(f"**GPU {gpu.index} · {literal(gpu.name)}**")
        util, memory, temperature = st.columns(3)
        util.metric("Utilisation", f"{gpu.utilization_pct:.0f} %")
        memory.metric("Memory", f"{gpu.memory_used_mib / 1024:.1f} / {gpu.memory_total_mib / 1024:.1f} GiB")
        temperature.metric("Temperature", "—" if gpu.temperature_c is None else f"{gpu.temperature_c:.0f} °C")
        st.progress(min(gpu.memory_used_mib / gpu.memory_total_mib, 1.0) if gpu.memory_total_mib else 0.0)


@fragment(run_every=REFRESH_S)
def live_health_and_hardware() -> None:
    health_section()
    hardware_section()
