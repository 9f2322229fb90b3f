"""README's SLURM recipe, run: a one-node SLURM cluster on this machine (munged, slurmctld and slurmd
from Debian's munge and slurm-wlm, a temporary configuration, every daemon on 127.0.0.1, started
here and stopped by PID), dask-jobqueue's SLURMCluster submitting the Dask workers as SLURM jobs,
and the batch run on it through api.run_batch and through the command's --scheduler."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import stop_process
from batch_collection import (assert_same_case, collection, free_port, ledger_lines,  # noqa: F401 (fixture)
                              run_single_case)

DAEMONS = ("munged", "slurmctld", "slurmd")
CASES = ("case-00", "case-01", "case-03", "case-06")  # case-06 is bad (its series folder does not exist)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS)
    or not shutil.which("sbatch"), reason="needs root, munge and slurm-wlm (.ci/run installs them)")


def _daemon(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


SLURM_CONF = """ClusterName=dae
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.sock
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
NodeName=dae-node NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=dae Nodes=dae-node Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM cluster (partition ``dae``) on 127.0.0.1; yields its environment (SLURM_CONF)."""
    import socket

    root = Path(tempfile.mkdtemp(prefix="dae-slurm-"))  # short: munge's socket path must fit 108 bytes
    for sub in ("munge", "key", "state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o755)
    (root / "key").chmod(0o700)
    key = root / "key" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], root=root, ctld_port=free_port(),
                                      slurmd_port=free_port(), cpus=os.cpu_count() or 1))
    env = dict(os.environ, SLURM_CONF=str(conf))
    processes = []
    try:
        processes.append(subprocess.Popen(
            [_daemon("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={root}/munge/munge.sock",
             f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/log/munged.log", f"--seed-file={root}/key/seed"],
            stdout=subprocess.DEVNULL, stderr=open(root / "log" / "munged.err", "w")))
        deadline = time.monotonic() + 20
        while not (root / "munge" / "munge.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        processes.append(subprocess.Popen([_daemon("slurmctld"), "-D", "-i", "-f", str(conf)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(root / "log" / "slurmctld.err", "w")))
        processes.append(subprocess.Popen([_daemon("slurmd"), "-D", "-f", str(conf), "-N", "dae-node"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(root / "log" / "slurmd.err", "w")))
        state = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and state != "idle":
            assert all(p.poll() is None for p in processes), (root / "log" / "slurmctld.err").read_text()[-2000:]
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
            time.sleep(0.3)
        assert state == "idle", f"the SLURM node is {state!r}: see {root}/log"
        yield env
    finally:
        if processes:
            subprocess.run(["scancel", "--full", "--partition", "dae"], env=env, capture_output=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and subprocess.run(
                    ["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip():
                time.sleep(0.3)
        for process in reversed(processes):  # slurmd, slurmctld, then munged
            stop_process(process, timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def _manifest(collection_cases: dict, path: Path) -> None:
    rows = [{"id": c, "series": str(collection_cases[c]["series"]),
             "annotations": [str(collection_cases[c]["segmentation"]), str(collection_cases[c]["markups"])],
             "outputs": list(collection_cases[c]["outputs"])} for c in CASES]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_batch_on_slurm_through_dask_jobqueue(slurm, collection, tmp_path, monkeypatch):  # noqa: F811
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    from DicomAnnotEmbedLib import api

    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])  # for the sbatch/scancel that dask-jobqueue runs
    _, cases = collection
    manifest = tmp_path / "manifest.jsonl"
    _manifest(cases, manifest)
    logs = tmp_path / "jobs"
    started = time.monotonic()
    # README's recipe, on loopback: the scheduler and the workers listen on 127.0.0.1 only.
    cluster = dask_jobqueue.SLURMCluster(
        queue="dae", cores=1, processes=1, memory="2GB", walltime="00:10:00", python=sys.executable,
        worker_extra_args=["--host", "127.0.0.1", "--nthreads", "1", "--memory-limit", "1.5GB", "--no-dashboard"],
        scheduler_options={"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}, log_directory=str(logs))
    try:
        cluster.adapt(minimum_jobs=0, maximum_jobs=2)  # no job until the batch submits its cases
        result = api.run_batch(manifest, tmp_path / "out", scheduler=cluster.scheduler_address, worker_timeout=90)
        assert sorted(result.done) == ["case-00", "case-01", "case-03"] and result.failed == ["case-06"]
        assert result.records["case-06"]["error"] == f"{cases['case-06']['series']}: folder does not exist"
        # the only workers of this scheduler are SLURM jobs (dask-jobqueue's job logs, one per job)
        worker_logs = [p.read_text() for p in logs.glob("dask-worker-*.err")]
        assert worker_logs and all(re.search(rf"Registered to:\s+{re.escape(cluster.scheduler_address)}\b", t)
                                   for t in worker_logs), worker_logs

        # the command, on the same cluster (--scheduler): a second output folder
        out = tmp_path / "out-cli"
        command = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out", str(out),
                                  "--scheduler", cluster.scheduler_address, "--worker-timeout", "90"],
                                 capture_output=True, text=True, timeout=300)
        assert command.returncode == 3, command.stderr
        records = {r["case"]: r for r in ledger_lines(out)}
        assert sorted(c for c, r in records.items() if r["status"] == "done") == ["case-00", "case-01", "case-03"]
    finally:
        cluster.close()
    single = tmp_path / "single"
    run_single_case(cases["case-03"], single, cases["case-03"]["outputs"])
    assert_same_case(tmp_path / "out" / "case-03", single)
    assert_same_case(out / "case-03", single)
    print(f"SLURM batch test: {time.monotonic() - started:.1f} s after the SLURM cluster was up")


def test_batch_on_dask_workers_submitted_with_sbatch(slurm, collection, tmp_path):  # noqa: F811
    """README's other recipe: a `dask scheduler` started by hand, `dask worker` jobs submitted with
    `sbatch --wrap`, and the command with --scheduler."""
    _, cases = collection
    manifest = tmp_path / "manifest.jsonl"
    _manifest(cases, manifest)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", f"127.0.0.1:{free_port()}"],
                                 stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w"))
    jobs = []
    try:
        for _ in range(2):
            submitted = subprocess.run(
                ["sbatch", "--parsable", "--partition", "dae", "--mem", "2G", "--cpus-per-task", "1", "--time", "00:10:00",
                 "--output", str(tmp_path / "worker-%j.log"),
                 "--wrap", f"{sys.executable} -m dask worker {address} --host 127.0.0.1 --nthreads 1 "
                           "--memory-limit 1.5GB --no-dashboard"],
                env=slurm, capture_output=True, text=True, check=True)
            jobs.append(submitted.stdout.strip().split(";")[0])
        out = tmp_path / "out"
        command = subprocess.run([sys.executable, "-m", "DicomAnnotEmbedLib.cli", "batch", str(manifest), "--out", str(out),
                                  "--scheduler", address, "--worker-timeout", "90"],
                                 capture_output=True, text=True, timeout=300)
        assert command.returncode == 3, command.stderr
        records = {r["case"]: r for r in ledger_lines(out)}
        assert sorted(c for c, r in records.items() if r["status"] == "done") == ["case-00", "case-01", "case-03"]
        assert records["case-06"]["status"] == "failed"
        # Both jobs' workers join the scheduler; on a loaded machine the second may register only after
        # the first has run every case (the jobs live on until scancel): wait for it, within a minute.
        registered = re.compile(rf"Registered to:\s+{re.escape(address)}\b")
        deadline = time.monotonic() + 60
        while True:
            logs = [p.read_text() for p in tmp_path.glob("worker-*.log")]
            if (len(logs) == 2 and all(registered.search(t) for t in logs)) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert len(logs) == 2 and all(registered.search(t) for t in logs), logs
    finally:
        if jobs:
            subprocess.run(["scancel", *jobs], env=slurm, capture_output=True)
        stop_process(scheduler, timeout=20)
