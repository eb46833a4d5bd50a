"""The job's failures, each with the exit code a scheduler can act on (sysexits.h)."""

from __future__ import annotations

EX_USAGE = 64
EX_DATAERR = 65  # a corrupt slice: the input is there but cannot be read
EX_NOINPUT = 66  # no data for the day, or no such bucket or directory
EX_SOFTWARE = 70


class JobError(Exception):
    """A failure the job reports in one line, leaving the warehouse as it was."""

    exit_code = EX_SOFTWARE


class NoInputError(JobError):
    exit_code = EX_NOINPUT


class CorruptSliceError(JobError):
    exit_code = EX_DATAERR
