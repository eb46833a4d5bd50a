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

Rotation: when a path names a new inode (rename and create), the old file is
read to its end and dropped `rotate_wait` seconds later while the new one is
read from its start; when a file shrinks below the position (copytruncate), it
is read again from 0.

The modules follow those seams: `config` (settings and sources), `positions`
(the position files, which the rotation helper reads too), `tail` (watching
and reading files into batches), `shipper` (the shipping thread and the
in-flight file), `daemon` (the two together) and `cli` (the command). This
package imports none of them, so a reader of positions loads no daemon.
"""
