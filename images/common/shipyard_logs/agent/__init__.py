"""shipyard log agent: tails files like fluentd's in_tail and forwards them with acks.

    python3 -m shipyard_logs.agent [--config FILE] [--check-config]

Each source (paths or globs, a tag, a format) keeps a position file with one
line per watched file, `path<TAB>offset<TAB>inode` in hex as fluentd writes
it. Lines are parsed, tagged, batched and sent as PackedForward frames, each
with a unique `chunk` id. Positions move only after the collector acked every
frame of a batch, so the backlog stays in the log files themselves.

Shipping runs in its own thread, so reading and parsing go on while batches
are in flight: up to `max_inflight` batches are sent before the oldest is
acked, and acks commit positions strictly in batch order. Every batch not yet
committed is in `<pos_dir>/inflight.msgpack`, written before the batch is
sent: after a crash or a lost connection they are resent in order with the
same chunk ids, which the collector recognises, so nothing is duplicated.

Several collectors (`[[servers]]`, as fluentd's out_forward): batches go to
them by weight, standbys stand in while regular ones are detached, a
collector that fails (connect, send, ack timeout, missed heartbeats) is
detached and the frames it had not acked go to the next one under the same
chunk ids; it is attached again once its heartbeats answer (balance.py,
heartbeat.py).

Rotation: when a path names a new inode (rename and create), the old file is
read to its end and dropped `rotate_wait` seconds later while the new one is
read from its start; a truncated file (copytruncate) is read again from 0,
whether it is shorter than the position when the agent looks or already
longer again (the bytes just before the position are no longer the ones read).

The modules follow those seams: `config` (settings and sources), `servers`
(the collectors' and heartbeats' settings), `positions` (the position files,
which the rotation helper reads too), `tail` (watching and reading files into
batches), `balance` (which collector, and when one failed or is back),
`heartbeat` (the heartbeat threads), `link` (one connection), `shipper` (the
shipping thread and the in-flight file), `daemon` (the two together) and
`cli` (the command). This
package imports none of them, so a reader of positions loads no daemon.
"""
