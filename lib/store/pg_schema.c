/*
 * pg_schema.c - the PostgreSQL store's versioned schema: its SQL, and
 * mly_store_pg_init / _migrate / _stat (mealy.h).
 *
 * Everything lives in the SQL schema "mealy".  Version N is made by
 * applying migrations[0..N-1] in order; mealy.schema_version holds the one
 * row saying which version the database is at.  init and migrate run in
 * one transaction under an advisory lock (two processes migrating at once
 * wait for each other), and refuse a database whose version is newer than
 * MLY_STORE_PG_VERSION: older code must not write a schema it does not
 * know.  These functions are for tools: each makes its own loop and
 * connection (pg_conn.c, without retry) and runs it until done.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mealy.h"
#include "pg_conn.h"
#include "pg_schema.h"

/* Version 1: what the PostgreSQL store of issue 13 keeps.
 * instances: one row per durable instance; owner + lease_expires is the
 *   ownership lease, epoch the fencing token (raised at every claim; a
 *   step commits only with the epoch and step it expects), step the last
 *   committed step, state and context the committed bytes; ended_at set
 *   makes the row a tombstone, which keeps its name taken (MLY_EEXIST,
 *   as in the journal: mealy.h "Contexts and names") until tomb_until,
 *   when the store deletes the row.
 * events: pending events and posts, delivered in id order per receiver
 *   (sender + sender_seq keep per-sender order and make redelivery
 *   idempotent).
 * timers: due times per instance. */
static const char *const v1[] = {
    "CREATE SCHEMA mealy",
    "CREATE TABLE mealy.schema_version ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " version integer NOT NULL,"
    " migrated_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE mealy.instances ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " name text,"
    " machine text NOT NULL,"
    " owner text,"
    " lease_expires timestamptz,"
    " epoch bigint NOT NULL DEFAULT 0,"
    " step bigint NOT NULL DEFAULT 0,"
    " state bytea,"
    " context bytea,"
    " created_at timestamptz NOT NULL DEFAULT now(),"
    " ended_at timestamptz,"
    " end_status integer,"
    " tomb_until timestamptz)",
    "CREATE UNIQUE INDEX instances_name ON mealy.instances (name)"
    " WHERE name IS NOT NULL",
    "CREATE INDEX instances_tombs ON mealy.instances (tomb_until)"
    " WHERE ended_at IS NOT NULL",
    "CREATE INDEX instances_lease ON mealy.instances (lease_expires)"
    " WHERE ended_at IS NULL",
    "CREATE TABLE mealy.events ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " instance_id bigint NOT NULL REFERENCES mealy.instances (id)"
    "  ON DELETE CASCADE,"
    " sender text,"
    " sender_seq bigint,"
    " kind text NOT NULL,"
    " payload bytea,"
    " created_at timestamptz NOT NULL DEFAULT now())",
    "CREATE INDEX events_instance ON mealy.events (instance_id, id)",
    "CREATE UNIQUE INDEX events_sender ON mealy.events (sender, sender_seq)"
    " WHERE sender IS NOT NULL",
    "CREATE TABLE mealy.timers ("
    " instance_id bigint NOT NULL REFERENCES mealy.instances (id)"
    "  ON DELETE CASCADE,"
    " timer_id bigint NOT NULL,"
    " due timestamptz NOT NULL,"
    " payload bytea,"
    " PRIMARY KEY (instance_id, timer_id))",
    "CREATE INDEX timers_due ON mealy.timers (due)",
    NULL};

/* Version 2: the store of durable machines (pg_store.c).  It replaces
 * v1's tables, which no mealy wrote.
 *
 * nodes: one row per process that opened the store (never reused).  A
 *   node owns what it owns while lease_until is in the future; epoch is
 *   its fencing token, from one sequence, so a later claimant always has
 *   a larger one; taken_by is set when another node took over everything
 *   of a node whose lease ran out: the row is then dead for good (its
 *   process, if it wakes, can neither renew nor commit).
 * ranges: instance ids are the runtime's (generation << 32 | slot), made
 *   by each process from its own slot table.  So that ids never collide
 *   across processes, each node holds slot ranges (range r: slots
 *   r << 18 .. (r + 1) << 18, 262,144 of them) and makes new instances
 *   only in its own first range.  A range goes with the instances in it:
 *   a takeover moves the dead node's ranges to the claimant (whose slot
 *   table then holds those instances at their own slots), so no two live
 *   nodes ever allocate in one range.  A range whose holder is dead and
 *   has no instance left is free again.
 * instances: a live durable instance: owner node, the owner's epoch when
 *   it got it, its last committed step, its S record (fields 0..9; see
 *   journal.h) and context (msgpack; NULL: none), due_ms (wall ms of its
 *   timer, NULL: none).  Every change is checked against owner, epoch
 *   and step (mealy.step): a fenced process changes nothing.
 * events: pending events for durable instances (E bodies), deleted when
 *   consumed or dropped; seq (commit order: a sender's steps commit one
 *   after another) keeps per-sender order at the receiver.
 * names: a name is taken by a live instance (ended_ms NULL) or by its
 *   tombstone (status, ended_ms): one primary key over both, so a name is
 *   unique across processes with the journal's MLY_EEXIST answers.
 *   mealy.tombstones is the ended part.
 * The functions below are the changes a commit makes, one call per
 * record, pipelined in the batch's transaction; each raises (SQLSTATE
 * MLYF1, "mealy fenced: ...") when this node no longer owns what it
 * changes, and that aborts the whole batch. */
static const char *const v2[] = {
    "DROP TABLE mealy.timers, mealy.events, mealy.instances",
    "CREATE SEQUENCE mealy.epochs",
    "CREATE TABLE mealy.nodes ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " host text NOT NULL,"
    " pid integer NOT NULL,"
    " epoch bigint NOT NULL DEFAULT nextval('mealy.epochs'),"
    " lease_until timestamptz NOT NULL,"
    " taken_by bigint,"
    " started_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE mealy.ranges ("
    " range_no integer PRIMARY KEY CHECK (range_no BETWEEN 0 AND 63),"
    " node bigint NOT NULL REFERENCES mealy.nodes (id))",
    "CREATE INDEX ranges_node ON mealy.ranges (node)",
    "CREATE TABLE mealy.instances ("
    " id bigint PRIMARY KEY,"
    " owner bigint NOT NULL REFERENCES mealy.nodes (id),"
    " epoch bigint NOT NULL,"
    " step bigint NOT NULL,"
    " parent bigint NOT NULL DEFAULT 0,"
    " name text UNIQUE,"
    " due_ms bigint,"
    " state bytea NOT NULL,"
    " context bytea)",
    "CREATE INDEX instances_owner ON mealy.instances (owner)",
    "CREATE INDEX instances_range ON mealy.instances"
    " (((id & 4294967295) >> 18))",
    "CREATE TABLE mealy.events ("
    " eid bigint PRIMARY KEY,"
    " target bigint NOT NULL,"
    " sender bigint NOT NULL,"
    " seq bigint GENERATED ALWAYS AS IDENTITY,"
    " body bytea NOT NULL)",
    "CREATE INDEX events_target ON mealy.events (target, seq)",
    "CREATE TABLE mealy.names ("
    " name text PRIMARY KEY,"
    " id bigint NOT NULL,"
    " status bigint,"
    " ended_ms bigint)",
    "CREATE VIEW mealy.tombstones AS SELECT name, id, status, ended_ms"
    " FROM mealy.names WHERE ended_ms IS NOT NULL",
    "CREATE FUNCTION mealy.fenced(what text) RETURNS void LANGUAGE plpgsql"
    " AS $$BEGIN RAISE EXCEPTION 'mealy fenced: %', what"
    " USING ERRCODE = 'MLYF1'; END$$",
    /* the batch's first statement: this node still holds its lease */
    "CREATE FUNCTION mealy.fence(p_node bigint, p_epoch bigint)"
    " RETURNS void LANGUAGE plpgsql AS $$BEGIN"
    " PERFORM 1 FROM mealy.nodes WHERE id = p_node AND epoch = p_epoch"
    "  AND taken_by IS NULL AND lease_until > clock_timestamp() FOR UPDATE;"
    " IF NOT FOUND THEN PERFORM mealy.fenced(format("
    "  'node %s (epoch %s) no longer holds its lease', p_node, p_epoch));"
    " END IF; END$$",
    "CREATE FUNCTION mealy.create(p_node bigint, p_epoch bigint, p_id bigint,"
    " p_step bigint, p_parent bigint, p_name text, p_due bigint,"
    " p_state bytea, p_ctx bytea) RETURNS void LANGUAGE plpgsql AS $$BEGIN"
    /* a tombstone gives its name up: the runtime found it expired (its
     * retention); a live name is refused (unique_violation) */
    " IF p_name IS NOT NULL THEN"
    "  INSERT INTO mealy.names (name, id) VALUES (p_name, p_id)"
    "   ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, status = NULL,"
    "   ended_ms = NULL WHERE mealy.names.ended_ms IS NOT NULL;"
    "  IF NOT FOUND THEN RAISE unique_violation USING MESSAGE = format("
    "   'mealy: the name %s is taken by a live instance', p_name);"
    "  END IF; END IF;"
    " INSERT INTO mealy.instances (id, owner, epoch, step, parent, name,"
    "  due_ms, state, context) VALUES (p_id, p_node, p_epoch, p_step,"
    "  p_parent, p_name, p_due, p_state, p_ctx); END$$",
    "CREATE FUNCTION mealy.step(p_node bigint, p_epoch bigint, p_id bigint,"
    " p_expect bigint, p_step bigint, p_due bigint, p_state bytea,"
    " p_setctx boolean, p_ctx bytea, p_took bigint[])"
    " RETURNS void LANGUAGE plpgsql AS $$BEGIN"
    " UPDATE mealy.instances SET step = p_step, due_ms = p_due,"
    "  state = p_state,"
    "  context = CASE WHEN p_setctx THEN p_ctx ELSE context END"
    "  WHERE id = p_id AND owner = p_node AND epoch = p_epoch"
    "  AND step = p_expect;"
    " IF NOT FOUND THEN PERFORM mealy.fenced(format("
    "  'instance %s is not node %s''s at epoch %s and step %s', p_id,"
    "  p_node, p_epoch, p_expect)); END IF;"
    " IF cardinality(p_took) > 0 THEN"
    "  DELETE FROM mealy.events WHERE eid = ANY (p_took); END IF; END$$",
    /* the steps of a loop turn, as arrays: one statement for all */
    "CREATE FUNCTION mealy.steps(p_node bigint, p_epoch bigint,"
    " p_ids bigint[], p_expect bigint[], p_steps bigint[], p_due bigint[],"
    " p_states bytea[], p_setctx boolean[], p_ctx bytea[], p_took bigint[])"
    " RETURNS void LANGUAGE plpgsql AS $$DECLARE n bigint; BEGIN"
    " UPDATE mealy.instances i SET step = u.step, due_ms = u.due,"
    "  state = u.state,"
    "  context = CASE WHEN u.setctx THEN u.ctx ELSE i.context END"
    "  FROM unnest(p_ids, p_expect, p_steps, p_due, p_states, p_setctx,"
    "  p_ctx) AS u(id, expect, step, due, state, setctx, ctx)"
    "  WHERE i.id = u.id AND i.owner = p_node AND i.epoch = p_epoch"
    "  AND i.step = u.expect;"
    " GET DIAGNOSTICS n = ROW_COUNT;"
    " IF n <> cardinality(p_ids) THEN PERFORM mealy.fenced(format("
    "  '%s of %s instances are not node %s''s at epoch %s and the step"
    "  expected', cardinality(p_ids) - n, cardinality(p_ids), p_node,"
    "  p_epoch)); END IF;"
    " IF cardinality(p_took) > 0 THEN"
    "  DELETE FROM mealy.events WHERE eid = ANY (p_took); END IF; END$$",
    "CREATE FUNCTION mealy.end_(p_node bigint, p_epoch bigint, p_id bigint,"
    " p_status bigint, p_ended_ms bigint, p_name text)"
    " RETURNS void LANGUAGE plpgsql AS $$BEGIN"
    " DELETE FROM mealy.instances WHERE id = p_id AND owner = p_node"
    "  AND epoch = p_epoch;"
    " IF NOT FOUND THEN PERFORM mealy.fenced(format("
    "  'instance %s is not node %s''s at epoch %s', p_id, p_node, p_epoch));"
    " END IF;"
    " DELETE FROM mealy.events WHERE target = p_id;"
    " IF p_name IS NOT NULL THEN UPDATE mealy.names SET status = p_status,"
    "  ended_ms = p_ended_ms WHERE name = p_name AND id = p_id; END IF;"
    " END$$",
    NULL};

/* Version 3: a lost connection (pg_store.c).  nodes.batch_serial is the
 * serial of the last batch this node committed; the fence (now given the
 * batch's serial) sets it in the batch's own transaction, so after a
 * reconnection the node reads which of the batches whose answer it lost
 * committed, and a batch sent again can never commit twice: the fence
 * refuses a serial not above the row's (SQLSTATE MLYF2, "mealy
 * committed: ...").  That check comes before the lease's: a batch that
 * did commit stays committed whatever became of the lease since. */
static const char *const v3[] = {
    "ALTER TABLE mealy.nodes ADD COLUMN batch_serial bigint NOT NULL"
    " DEFAULT 0",
    "CREATE FUNCTION mealy.fence(p_node bigint, p_epoch bigint,"
    " p_serial bigint) RETURNS void LANGUAGE plpgsql AS $$DECLARE"
    " s bigint; live boolean; BEGIN"
    " SELECT batch_serial, epoch = p_epoch AND taken_by IS NULL"
    "  AND lease_until > clock_timestamp() INTO s, live"
    "  FROM mealy.nodes WHERE id = p_node FOR UPDATE;"
    " IF s >= p_serial THEN RAISE EXCEPTION"
    "  'mealy committed: batch % of node % committed already', p_serial,"
    "  p_node USING ERRCODE = 'MLYF2'; END IF;"
    " IF NOT coalesce(live, false) THEN PERFORM mealy.fenced(format("
    "  'node %s (epoch %s) no longer holds its lease', p_node, p_epoch));"
    " END IF;"
    " UPDATE mealy.nodes SET batch_serial = p_serial WHERE id = p_node;"
    " END$$",
    NULL};

/* Version 4: a batch that failed and is sent again (pg_store.c: a lock
 * or statement timeout, a deadlock) keeps its place.  The batches behind
 * it were already in the pipeline: none of them may commit before it.
 * The fence now also gets the serial the row must already hold (p_prev:
 * the batch sent before it, or the last one known committed); a lower
 * serial on the row means a batch before this one did not commit, and
 * the fence refuses (SQLSTATE MLYF3, "mealy out of order: ..."): the
 * node sends this one again after it.  The lease is checked before the
 * order, the serial already committed (MLYF2) first of all. */
static const char *const v4[] = {
    "CREATE FUNCTION mealy.fence(p_node bigint, p_epoch bigint,"
    " p_serial bigint, p_prev bigint) RETURNS void LANGUAGE plpgsql AS"
    " $$DECLARE s bigint; live boolean; BEGIN"
    " SELECT batch_serial, epoch = p_epoch AND taken_by IS NULL"
    "  AND lease_until > clock_timestamp() INTO s, live"
    "  FROM mealy.nodes WHERE id = p_node FOR UPDATE;"
    " IF s >= p_serial THEN RAISE EXCEPTION"
    "  'mealy committed: batch % of node % committed already', p_serial,"
    "  p_node USING ERRCODE = 'MLYF2'; END IF;"
    " IF NOT coalesce(live, false) THEN PERFORM mealy.fenced(format("
    "  'node %s (epoch %s) no longer holds its lease', p_node, p_epoch));"
    " END IF;"
    " IF s < p_prev THEN RAISE EXCEPTION"
    "  'mealy out of order: batch % of node % follows batch %, which did not"
    " commit', p_serial, p_node, p_prev USING ERRCODE = 'MLYF3'; END IF;"
    " UPDATE mealy.nodes SET batch_serial = p_serial WHERE id = p_node;"
    " END$$",
    NULL};

/* Version 5: names across processes (pg_store.c "names").
 * names.rev: a change counter (a sequence, set on every insert and
 *   update): each process reads the rows changed since it last looked
 *   and learns the names others hold and their tombstones.
 * A batch that creates named instances first calls mealy.names_claim
 *   with every name it creates, the instance that would hold it and
 *   its group (the instance whose step spawns it, or itself for a create
 *   of its own).  A name held elsewhere (a live row, or a tombstone
 *   within the retention p_retention, ms; < 0: forever) is not taken:
 *   the function answers it with its holder, and puts the group in the
 *   transaction's skip set (mealy.skipped(): the setting mealy.skip).
 *   Every change the batch makes then leaves the skip set out: the
 *   steps of those instances, the creates they (or a skipped create)
 *   make, the events they send, the events they consumed stay.  The
 *   rest of the batch commits.  mealy.rerun_rows, last, reads back the
 *   rows of the skipped instances still this node's, with their
 *   descendants and their pending events, as the batch leaves them: the
 *   process runs those steps again, and the spawn finds the name taken.
 *   Nothing raises for a name, so no other work of the batch is lost.
 * mealy.expire_names deletes tombstones past the retention, at most
 *   p_limit of them (each process calls it as it renews its lease).
 * Events are inserted only for targets that have a row (mealy.events
 *   keeps nothing for an id no process holds). */
static const char *const v5[] = {
    "CREATE SEQUENCE mealy.name_revs",
    "ALTER TABLE mealy.names ADD COLUMN rev bigint NOT NULL"
    " DEFAULT nextval('mealy.name_revs')",
    "CREATE INDEX names_rev ON mealy.names (rev)",
    "CREATE INDEX names_ended ON mealy.names (ended_ms)"
    " WHERE ended_ms IS NOT NULL",
    "CREATE INDEX instances_parent ON mealy.instances (parent)"
    " WHERE parent <> 0",
    "CREATE FUNCTION mealy.name_rev() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN NEW.rev := nextval('mealy.name_revs'); RETURN NEW; END$$",
    "CREATE TRIGGER names_rev BEFORE UPDATE ON mealy.names FOR EACH ROW"
    " EXECUTE FUNCTION mealy.name_rev()",
    "CREATE FUNCTION mealy.skipped() RETURNS bigint[] LANGUAGE sql STABLE"
    " AS $$SELECT coalesce(nullif(current_setting('mealy.skip', true), ''),"
    " '{}')::bigint[]$$",
    "CREATE FUNCTION mealy.now_ms() RETURNS bigint LANGUAGE sql VOLATILE"
    " AS $$SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint$$",
    "CREATE FUNCTION mealy.names_claim(p_node bigint, p_epoch bigint,"
    " p_names text[], p_ids bigint[], p_groups bigint[], p_retention bigint)"
    " RETURNS TABLE (c_name text, c_holder bigint, c_status bigint,"
    " c_ended bigint, c_group bigint) LANGUAGE plpgsql AS $$DECLARE"
    " skip bigint[] := '{}'; t bigint := mealy.now_ms(); r record;"
    " n record; got bigint; BEGIN"
    " FOR r IN SELECT u.nm, u.id, u.g FROM unnest(p_names, p_ids, p_groups)"
    "  AS u(nm, id, g) ORDER BY u.nm LOOP"
    "  CONTINUE WHEN r.g = ANY (skip);"
    "  got := NULL;"
    /* a look without a lock first: a live name is answered as it is */
    "  SELECT x.id, x.status, x.ended_ms INTO n FROM mealy.names x"
    "   WHERE x.name = r.nm;"
    "  IF NOT FOUND OR n.id = r.id OR (n.ended_ms IS NOT NULL"
    "   AND p_retention >= 0 AND n.ended_ms <= t - p_retention) THEN"
    "   INSERT INTO mealy.names AS x (name, id) VALUES (r.nm, r.id)"
    "    ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, status = NULL,"
    "    ended_ms = NULL WHERE x.id = EXCLUDED.id OR (x.ended_ms IS NOT NULL"
    "    AND p_retention >= 0 AND x.ended_ms <= t - p_retention)"
    "    RETURNING x.id INTO got;"
    "   IF got IS NULL THEN SELECT x.id, x.status, x.ended_ms INTO n"
    "    FROM mealy.names x WHERE x.name = r.nm; END IF;"
    "  END IF;"
    "  IF got IS NULL THEN skip := skip || r.g; c_name := r.nm;"
    "   c_holder := n.id; c_status := n.status; c_ended := n.ended_ms;"
    "   c_group := r.g; RETURN NEXT; END IF;"
    " END LOOP;"
    " IF cardinality(skip) > 0 THEN"
    "  DELETE FROM mealy.names x USING unnest(p_names, p_ids, p_groups)"
    "   AS u(nm, id, g) WHERE x.name = u.nm AND x.id = u.id"
    "   AND u.g = ANY (skip);"
    "  PERFORM set_config('mealy.skip', skip::text, true);"
    " END IF; END$$",
    "CREATE OR REPLACE FUNCTION mealy.create(p_node bigint, p_epoch bigint,"
    " p_id bigint, p_step bigint, p_parent bigint, p_name text,"
    " p_due bigint, p_state bytea, p_ctx bytea) RETURNS void"
    " LANGUAGE plpgsql AS $$DECLARE s bigint[] := mealy.skipped(); BEGIN"
    " IF p_id = ANY (s) OR p_parent = ANY (s) THEN RETURN; END IF;"
    " IF p_name IS NOT NULL THEN"
    "  PERFORM 1 FROM mealy.names WHERE name = p_name AND id = p_id;"
    "  IF NOT FOUND THEN"
    "   INSERT INTO mealy.names (name, id) VALUES (p_name, p_id)"
    "    ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, status = NULL,"
    "    ended_ms = NULL WHERE mealy.names.ended_ms IS NOT NULL;"
    "   IF NOT FOUND THEN RAISE unique_violation USING MESSAGE = format("
    "    'mealy: the name %s is taken by a live instance', p_name);"
    "   END IF; END IF; END IF;"
    " INSERT INTO mealy.instances (id, owner, epoch, step, parent, name,"
    "  due_ms, state, context) VALUES (p_id, p_node, p_epoch, p_step,"
    "  p_parent, p_name, p_due, p_state, p_ctx); END$$",
    "CREATE OR REPLACE FUNCTION mealy.steps(p_node bigint, p_epoch bigint,"
    " p_ids bigint[], p_expect bigint[], p_steps bigint[], p_due bigint[],"
    " p_states bytea[], p_setctx boolean[], p_ctx bytea[], p_took bigint[])"
    " RETURNS void LANGUAGE plpgsql AS $$DECLARE n bigint; k bigint := 0;"
    " s bigint[] := mealy.skipped(); BEGIN"
    " UPDATE mealy.instances i SET step = u.step, due_ms = u.due,"
    "  state = u.state,"
    "  context = CASE WHEN u.setctx THEN u.ctx ELSE i.context END"
    "  FROM unnest(p_ids, p_expect, p_steps, p_due, p_states, p_setctx,"
    "  p_ctx) AS u(id, expect, step, due, state, setctx, ctx)"
    "  WHERE i.id = u.id AND i.owner = p_node AND i.epoch = p_epoch"
    "  AND i.step = u.expect AND u.id <> ALL (s);"
    " GET DIAGNOSTICS n = ROW_COUNT;"
    " IF cardinality(s) > 0 THEN"
    "  SELECT count(*) INTO k FROM unnest(p_ids) x WHERE x = ANY (s); END IF;"
    " IF n + k <> cardinality(p_ids) THEN PERFORM mealy.fenced(format("
    "  '%s of %s instances are not node %s''s at epoch %s and the step"
    "  expected', cardinality(p_ids) - n - k, cardinality(p_ids), p_node,"
    "  p_epoch)); END IF;"
    " IF cardinality(p_took) > 0 THEN"
    "  DELETE FROM mealy.events WHERE eid = ANY (p_took)"
    "  AND target <> ALL (s); END IF; END$$",
    "CREATE OR REPLACE FUNCTION mealy.end_(p_node bigint, p_epoch bigint,"
    " p_id bigint, p_status bigint, p_ended_ms bigint, p_name text)"
    " RETURNS void LANGUAGE plpgsql AS $$BEGIN"
    " DELETE FROM mealy.instances WHERE id = p_id AND owner = p_node"
    "  AND epoch = p_epoch;"
    " IF NOT FOUND THEN"
    /* a child whose create the batch left out (skipped) ends as nothing */
    "  IF cardinality(mealy.skipped()) > 0 AND NOT EXISTS (SELECT 1"
    "   FROM mealy.instances WHERE id = p_id) THEN RETURN; END IF;"
    "  PERFORM mealy.fenced(format("
    "  'instance %s is not node %s''s at epoch %s', p_id, p_node, p_epoch));"
    " END IF;"
    " DELETE FROM mealy.events WHERE target = p_id;"
    " IF p_name IS NOT NULL THEN UPDATE mealy.names SET status = p_status,"
    "  ended_ms = p_ended_ms WHERE name = p_name AND id = p_id; END IF;"
    " END$$",
    "CREATE FUNCTION mealy.rerun_rows(p_node bigint, p_epoch bigint)"
    " RETURNS TABLE (k integer, id bigint, step bigint, parent bigint,"
    " state bytea, context bytea, name text, seq bigint) LANGUAGE sql AS"
    " $$WITH RECURSIVE t AS (SELECT i.id FROM mealy.instances i"
    "  WHERE i.id = ANY (mealy.skipped()) AND i.owner = p_node"
    "  AND i.epoch = p_epoch"
    "  UNION SELECT i.id FROM mealy.instances i JOIN t ON i.parent = t.id"
    "  WHERE i.parent <> 0 AND i.owner = p_node AND i.epoch = p_epoch)"
    " SELECT 0, i.id, i.step, i.parent, i.state, i.context, i.name, 0::bigint"
    "  FROM mealy.instances i JOIN t ON t.id = i.id"
    " UNION ALL SELECT 1, e.target, e.eid, 0, e.body, NULL, NULL, e.seq"
    "  FROM mealy.events e JOIN t ON e.target = t.id"
    " ORDER BY 1, 8, 2$$",
    "CREATE FUNCTION mealy.expire_names(p_retention bigint, p_limit integer)"
    " RETURNS bigint LANGUAGE sql AS $$WITH d AS (DELETE FROM mealy.names"
    " WHERE name IN (SELECT name FROM mealy.names WHERE ended_ms IS NOT NULL"
    "  AND ended_ms <= mealy.now_ms() - p_retention ORDER BY ended_ms"
    "  LIMIT p_limit FOR UPDATE SKIP LOCKED)"
    " AND ended_ms IS NOT NULL RETURNING 1) SELECT count(*) FROM d$$",
    NULL};

/* Version 6: the task pool and global queue limits (pg_tasks.c).
 * instances: owner NULL is a task in its queue's pool (pool, pool_prio,
 *   pool_eta: wall ms it is due, pool_key: its concurrency key value),
 *   claimed by any process that serves the queue (mealy.claim).
 * queues: a queue's limits as the last process to declare it gave them,
 *   and its token bucket (tokens, refilled_at).
 * slots: a slot held: a task's attempt (from its claim to the commit
 *   that ends the attempt) or a step's (mealy.take_slot, to the commit
 *   of the step).  A node's slots go when the node is taken over (its
 *   lease ran out: trigger on nodes.taken_by), an instance's when it
 *   ends (trigger on its row's delete).
 * claim and take_slot lock the queue's row: grants of one queue are
 * serialized, so the limits hold across all processes.  They also hold
 * the claimant's node row FOR SHARE: a takeover of that node (which
 * locks it FOR UPDATE SKIP LOCKED) comes wholly before or after, so no
 * grant of a process that died lands after its slots went, and no task
 * is claimed by a node already taken over. */
static const char *const v6[] = {
    "ALTER TABLE mealy.instances ALTER COLUMN owner DROP NOT NULL",
    "ALTER TABLE mealy.instances ADD COLUMN pool text,"
    " ADD COLUMN pool_prio integer, ADD COLUMN pool_eta bigint,"
    " ADD COLUMN pool_key text",
    "CREATE INDEX instances_pool ON mealy.instances"
    " (pool, pool_prio DESC, pool_eta, id) WHERE owner IS NULL",
    "CREATE TABLE mealy.queues ("
    " name text PRIMARY KEY,"
    " max_concurrent integer NOT NULL,"
    " rate double precision NOT NULL,"
    " bucket double precision NOT NULL,"
    " key_max integer NOT NULL,"
    " tokens double precision NOT NULL,"
    " refilled_at timestamptz NOT NULL)",
    "CREATE TABLE mealy.slots ("
    " instance bigint PRIMARY KEY,"
    " queue text NOT NULL,"
    " key text,"
    " node bigint NOT NULL,"
    " granted_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    "CREATE INDEX slots_queue ON mealy.slots (queue, key)",
    "CREATE INDEX slots_node ON mealy.slots (node)",
    "CREATE FUNCTION mealy.slots_of_taken() RETURNS trigger LANGUAGE plpgsql"
    " AS $$BEGIN DELETE FROM mealy.slots WHERE node = NEW.id; RETURN NEW;"
    " END$$",
    "CREATE TRIGGER nodes_taken AFTER UPDATE OF taken_by ON mealy.nodes"
    " FOR EACH ROW WHEN (NEW.taken_by IS NOT NULL AND OLD.taken_by IS NULL)"
    " EXECUTE FUNCTION mealy.slots_of_taken()",
    "CREATE FUNCTION mealy.slots_of_ended() RETURNS trigger LANGUAGE plpgsql"
    " AS $$BEGIN DELETE FROM mealy.slots WHERE instance = OLD.id;"
    " RETURN OLD; END$$",
    "CREATE TRIGGER instances_ended AFTER DELETE ON mealy.instances"
    " FOR EACH ROW EXECUTE FUNCTION mealy.slots_of_ended()",
    /* a declaration: the row keeps the last one; tokens stay */
    "CREATE FUNCTION mealy.serve(p_queue text, p_max integer,"
    " p_rate double precision, p_bucket double precision, p_keymax integer)"
    " RETURNS void LANGUAGE sql AS $$"
    " INSERT INTO mealy.queues VALUES (p_queue, p_max, p_rate, p_bucket,"
    "  p_keymax, p_bucket, clock_timestamp())"
    " ON CONFLICT (name) DO UPDATE SET max_concurrent = EXCLUDED.max_concurrent,"
    "  rate = EXCLUDED.rate, bucket = EXCLUDED.bucket,"
    "  key_max = EXCLUDED.key_max,"
    "  tokens = least(mealy.queues.tokens, EXCLUDED.bucket)$$",
    /* the bucket refilled to now (the queue's row locked by the caller) */
    "CREATE FUNCTION mealy.refill(q mealy.queues, p_now timestamptz)"
    " RETURNS double precision LANGUAGE sql AS $$"
    " SELECT CASE WHEN q.rate > 0 THEN least(q.bucket, q.tokens +"
    "  greatest(0, extract(epoch FROM p_now - q.refilled_at)) * q.rate)"
    "  ELSE q.tokens END$$",
    /* up to p_n due tasks of p_queue for node p_node: each gets a slot in
     * the same transaction; rows (id, NULL), then one (NULL, wait_ms):
     * when to look again (a token, a task's eta), NULL: on a notice */
    "CREATE FUNCTION mealy.claim(p_node bigint, p_epoch bigint,"
    " p_queue text, p_n integer) RETURNS TABLE (id bigint, wait_ms bigint)"
    " LANGUAGE plpgsql AS $$DECLARE q mealy.queues; now_ts timestamptz :="
    " clock_timestamp(); now_ms bigint; tok double precision;"
    " used integer; room integer; got integer := 0; more boolean"
    " := false; nxt bigint; BEGIN"
    " PERFORM 1 FROM mealy.nodes n WHERE n.id = p_node AND n.epoch = p_epoch"
    "  AND n.taken_by IS NULL AND n.lease_until > now_ts FOR SHARE;"
    " IF NOT FOUND THEN RETURN; END IF;"
    " SELECT * INTO q FROM mealy.queues WHERE name = p_queue FOR UPDATE;"
    " IF NOT FOUND THEN RETURN; END IF;"
    " now_ms := (extract(epoch FROM now_ts) * 1000)::bigint;"
    " tok := mealy.refill(q, now_ts);"
    " SELECT count(*) INTO used FROM mealy.slots s WHERE s.queue = p_queue;"
    " room := least(p_n, q.max_concurrent - used);"
    " IF q.rate > 0 THEN room := least(room, floor(tok)::integer); END IF;"
    /* set-based: candidates locked in order, each key's rank among
     * them plus what it holds within its limit, the first `room`; a
     * full claim says come again at once (more may be due) */
    " IF room > 0 THEN RETURN QUERY"
    "  WITH c AS (SELECT i.id, i.pool_key, i.pool_prio, i.pool_eta"
    "   FROM mealy.instances i WHERE i.owner IS NULL AND i.pool = p_queue"
    "   AND i.pool_eta <= now_ms ORDER BY i.pool_prio DESC, i.pool_eta, i.id"
    "   LIMIT CASE WHEN q.key_max > 0 THEN greatest(4 * room, 64) ELSE room"
    "   END FOR UPDATE SKIP LOCKED),"
    "  h AS (SELECT s.key, count(*) AS n FROM mealy.slots s"
    "   WHERE q.key_max > 0 AND s.queue = p_queue AND s.key IS NOT NULL"
    "   GROUP BY s.key),"
    "  k AS (SELECT c.*, row_number() OVER (PARTITION BY c.pool_key ORDER BY"
    "   c.pool_prio DESC, c.pool_eta, c.id) + coalesce(h.n, 0) AS rank"
    "   FROM c LEFT JOIN h ON h.key = c.pool_key),"
    "  ok AS (SELECT k.id, k.pool_key FROM k WHERE k.pool_key IS NULL"
    "   OR q.key_max = 0 OR k.rank <= q.key_max"
    "   ORDER BY k.pool_prio DESC, k.pool_eta, k.id LIMIT room),"
    "  ins AS (INSERT INTO mealy.slots (instance, queue, key, node,"
    "   granted_at) SELECT ok.id, p_queue, ok.pool_key, p_node, now_ts"
    "   FROM ok),"
    "  upd AS (UPDATE mealy.instances i SET owner = p_node, epoch = p_epoch,"
    "   pool = NULL FROM ok WHERE i.id = ok.id RETURNING i.id)"
    "  SELECT upd.id, NULL::bigint FROM upd;"
    "  GET DIAGNOSTICS got = ROW_COUNT;"
    "  more := got >= room; END IF;"
    " IF q.rate > 0 THEN UPDATE mealy.queues SET tokens = tok - got,"
    "  refilled_at = now_ts WHERE name = p_queue; END IF;"
    " id := NULL; wait_ms := NULL;"
    " IF q.rate > 0 AND tok - got < 1 AND used + got < q.max_concurrent THEN"
    "  wait_ms := ceil((1 - (tok - got)) * 1000 / q.rate)::bigint; END IF;"
    " SELECT min(i.pool_eta) INTO nxt FROM mealy.instances i"
    "  WHERE i.owner IS NULL AND i.pool = p_queue AND i.pool_eta > now_ms;"
    " IF nxt IS NOT NULL AND (wait_ms IS NULL OR nxt - now_ms < wait_ms)"
    "  THEN wait_ms := nxt - now_ms; END IF;"
    " IF more THEN wait_ms := 0; END IF;"
    " RETURN NEXT; END$$",
    /* a slot for one step of instance p_id (not a task): true granted
     * (or held already) */
    "CREATE FUNCTION mealy.take_slot(p_node bigint, p_epoch bigint,"
    " p_queue text, p_key text, p_id bigint) RETURNS boolean"
    " LANGUAGE plpgsql AS $$DECLARE q mealy.queues; now_ts timestamptz :="
    " clock_timestamp(); tok double precision; used integer; kc integer;"
    " BEGIN"
    " PERFORM 1 FROM mealy.nodes n WHERE n.id = p_node AND n.epoch = p_epoch"
    "  AND n.taken_by IS NULL AND n.lease_until > now_ts FOR SHARE;"
    " IF NOT FOUND THEN RETURN false; END IF;"
    " SELECT * INTO q FROM mealy.queues WHERE name = p_queue FOR UPDATE;"
    " IF NOT FOUND THEN RETURN false; END IF;"
    " PERFORM 1 FROM mealy.slots s WHERE s.instance = p_id;"
    " IF FOUND THEN RETURN true; END IF;"
    " tok := mealy.refill(q, now_ts);"
    " IF q.rate > 0 AND tok < 1 THEN RETURN false; END IF;"
    " SELECT count(*) INTO used FROM mealy.slots s WHERE s.queue = p_queue;"
    " IF used >= q.max_concurrent THEN RETURN false; END IF;"
    " IF p_key IS NOT NULL AND q.key_max > 0 THEN"
    "  SELECT count(*) INTO kc FROM mealy.slots s WHERE s.queue = p_queue"
    "   AND s.key = p_key;"
    "  IF kc >= q.key_max THEN RETURN false; END IF; END IF;"
    " INSERT INTO mealy.slots (instance, queue, key, node, granted_at)"
    "  VALUES (p_id, p_queue, p_key, p_node, now_ts);"
    " IF q.rate > 0 THEN UPDATE mealy.queues SET tokens = tok - 1,"
    "  refilled_at = now_ts WHERE name = p_queue; END IF;"
    " RETURN true; END$$",
    NULL};

const char *const *const mly_pg_migrations[MLY_STORE_PG_VERSION] = {
    v1, v2, v3, v4, v5, v6};

/* ---- running statements one after another on a private loop ---- */

#define ROW_MAX 8
#define VAL_MAX 64

typedef struct sync_q {
  bool done;
  char err[512];
  int ncols;
  int ntuples;
  bool has_row;
  bool null[ROW_MAX];
  char row[ROW_MAX][VAL_MAX];
} sync_q;

typedef struct session {
  uv_loop_t loop;
  mly_pg *pg;
  const char *conninfo;
  char *msg;
  size_t msgsz;
} session;

static void on_result(mly_pg *pg, const PGresult *res, const char *err,
                      void *arg) {
  (void)pg;
  sync_q *s = arg;
  s->done = true;
  if (err) {
    snprintf(s->err, sizeof s->err, "%s", err);
    return;
  }
  s->ncols = PQnfields(res) < ROW_MAX ? PQnfields(res) : ROW_MAX;
  s->ntuples = PQntuples(res);
  s->has_row = s->ntuples > 0;
  for (int i = 0; s->has_row && i < s->ncols; i++) {
    s->null[i] = PQgetisnull(res, 0, i);
    snprintf(s->row[i], VAL_MAX, "%s", PQgetvalue(res, 0, i));
  }
}

static int say(session *se, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int say(session *se, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (se->msg && se->msgsz) {
    vsnprintf(se->msg, se->msgsz, fmt, ap);
    pg_mask_password(se->conninfo, se->msg, se->msgsz);
  }
  va_end(ap);
  return rc;
}

/* Runs one statement to its end; MLY_EIO with the server's words. */
static int run(session *se, sync_q *s, const char *sql, int n,
               const char *const *vals) {
  memset(s, 0, sizeof *s);
  int r = mly_pg_query(se->pg, sql, n, vals, on_result, s);
  if (r == MLY_EIO)
    return say(se, r, "%s", mly_pg_last_error(se->pg));
  if (r < 0) return say(se, r, "%s", mly_strerror(r));
  while (!s->done) uv_run(&se->loop, UV_RUN_ONCE);
  if (s->err[0]) return say(se, MLY_EIO, "%s", s->err);
  return 0;
}

static int open_session(session *se, const char *conninfo, char *msg,
                        size_t msgsz) {
  memset(se, 0, sizeof *se);
  se->conninfo = conninfo;
  se->msg = msg;
  se->msgsz = msgsz;
  if (msg && msgsz) msg[0] = '\0';
  if (uv_loop_init(&se->loop) != 0) return say(se, MLY_ENOMEM, "no loop");
  int r = mly_pg_open(&se->loop, conninfo, false, &se->pg);
  if (r < 0) {
    uv_loop_close(&se->loop);
    return say(se, r, "%s", mly_strerror(r));
  }
  return 0;
}

static void close_session(session *se) {
  mly_pg_close(se->pg);
  uv_run(&se->loop, UV_RUN_DEFAULT);
  uv_loop_close(&se->loop);
}

int pg_schema_version_check(int ntuples, bool null, const char *text,
                            int *version, char *why, size_t whylen) {
  char what[256];
  long long v = 0;
  char *end = NULL;
  if (ntuples != 1) {
    snprintf(what, sizeof what, ntuples ? "has %d rows, not one" : "is empty",
             ntuples);
  } else if (null) {
    snprintf(what, sizeof what, "holds NULL, not a version");
  } else {
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < 1 || v > INT_MAX) {
      char shown[MLY_ESC_MAX(40) + 1];
      mly_esc_str(text, strnlen(text, 40), shown, sizeof shown);
      snprintf(what, sizeof what, "holds '%s', not a version from 1",
               shown);
    }
    else {
      *version = (int)v;
      return 0;
    }
  }
  *version = 0;
  if (why && whylen) {
    snprintf(why, whylen, "mealy.schema_version %s: %s", what,
             PG_SCHEMA_DAMAGED);
  }
  return MLY_EBADMSG;
}

/* The database's version: 0 when it has no mealy schema. */
static int db_version(session *se, int *version) {
  sync_q s;
  int r = run(se, &s,
              "SELECT to_regclass('mealy.schema_version') IS NOT NULL,"
              " to_regnamespace('mealy') IS NOT NULL", 0, NULL);
  if (r < 0) return r;
  *version = 0;
  if (strcmp(s.row[0], "t") != 0 && strcmp(s.row[1], "t") == 0)
    return say(se, MLY_EBADMSG, "%s", PG_SCHEMA_NO_VERSION);
  if (strcmp(s.row[0], "t") != 0) return 0;
  if ((r = run(se, &s, "SELECT version FROM mealy.schema_version", 0,
               NULL)) < 0)
    return r;
  char why[256];
  if ((r = pg_schema_version_check(s.ntuples, s.null[0], s.row[0], version,
                                   why, sizeof why)) < 0)
    return say(se, r, "%s", why);
  return 0;
}

static int newer(session *se, int v, int code) {
  return say(se, MLY_ERANGE,
             "the database's mealy schema is version %d, newer than this "
             "mealy's version %d: use a newer mealy (nothing was changed)",
             v, code);
}

/* init (create) or migrate (upgrade) to version `code` made of
 * migs[0..code-1]: one transaction. */
int mly_pg_schema_apply(const char *conninfo, const char *const *const *migs,
                        int code, bool create, int *from, char *msg,
                        size_t msgsz) {
  session se;
  sync_q s;
  int r = open_session(&se, conninfo, msg, msgsz), v = 0;
  if (r < 0) return r;
  if ((r = run(&se, &s, "BEGIN", 0, NULL)) < 0 ||
      (r = run(&se, &s, "SELECT pg_advisory_xact_lock(4242661413)", 0,
               NULL)) < 0 ||
      (r = db_version(&se, &v)) < 0)
    goto out;
  if (from) *from = v;
  if (v > code) {
    r = newer(&se, v, code);
  } else if (create && v > 0 && v < code) {
    r = say(&se, MLY_EEXIST,
            "the database has mealy schema version %d, older than %d: run "
            "`mealy store migrate`",
            v, code);
  } else if (!create && v == 0) {
    r = say(&se, MLY_ENOENT,
            "the database has no mealy schema: run `mealy store init`");
  } else {
    for (int m = v; m < code && r == 0; m++)
      for (const char *const *q = migs[m]; *q && r == 0; q++)
        r = run(&se, &s, *q, 0, NULL);
    char ver[16];
    snprintf(ver, sizeof ver, "%d", code);
    const char *vals[] = {ver};
    if (r == 0 && v < code)
      r = run(&se, &s,
              "INSERT INTO mealy.schema_version (version) VALUES ($1)"
              " ON CONFLICT (one) DO UPDATE SET version = $1,"
              " migrated_at = now()",
              1, vals);
    if (r == 0) r = run(&se, &s, "COMMIT", 0, NULL);
  }
out:
  close_session(&se); /* an open transaction is rolled back */
  return r;
}

static int no_conninfo(char *msg, size_t msgsz) {
  if (msg && msgsz) snprintf(msg, msgsz, "no conninfo");
  return MLY_EINVAL;
}

int mly_store_pg_init(const char *conninfo, int *from, char *msg,
                      size_t msgsz) {
  if (conninfo == NULL) return no_conninfo(msg, msgsz);
  return mly_pg_schema_apply(conninfo, mly_pg_migrations, MLY_STORE_PG_VERSION, true,
                             from, msg, msgsz);
}

int mly_store_pg_migrate(const char *conninfo, int *from, char *msg,
                         size_t msgsz) {
  if (conninfo == NULL) return no_conninfo(msg, msgsz);
  return mly_pg_schema_apply(conninfo, mly_pg_migrations, MLY_STORE_PG_VERSION,
                             false, from, msg, msgsz);
}

int mly_store_pg_stat(const char *conninfo, mly_store_pg_counts *st,
                      char *msg, size_t msgsz) {
  session se;
  sync_q s;
  if (conninfo == NULL) return no_conninfo(msg, msgsz);
  if (st == NULL) {
    if (msg && msgsz) snprintf(msg, msgsz, "no mly_store_pg_counts to fill");
    return MLY_EINVAL;
  }
  memset(st, 0, sizeof *st);
  st->code_version = MLY_STORE_PG_VERSION;
  int r = open_session(&se, conninfo, msg, msgsz);
  if (r < 0) return r;
  if ((r = db_version(&se, &st->version)) < 0) goto out;
  if (st->version == 0) {
    r = say(&se, MLY_ENOENT,
            "the database has no mealy schema: run `mealy store init`");
  } else if (st->version > MLY_STORE_PG_VERSION) {
    r = newer(&se, st->version, MLY_STORE_PG_VERSION);
  } else {
    r = run(&se, &s,
            "SELECT (SELECT count(*) FROM mealy.instances),"
            " (SELECT count(*) FROM mealy.tombstones),"
            " (SELECT count(*) FROM mealy.instances i JOIN mealy.nodes n"
            "    ON n.id = i.owner WHERE n.taken_by IS NULL"
            "    AND n.lease_until > now()),"
            " (SELECT count(*) FROM mealy.events),"
            " (SELECT count(*) FROM mealy.instances WHERE due_ms IS NOT NULL),"
            " (SELECT count(*) FROM mealy.nodes WHERE taken_by IS NULL"
            "    AND lease_until > now())",
            0, NULL);
    if (r == 0) {
      st->instances = strtoll(s.row[0], NULL, 10);
      st->ended = strtoll(s.row[1], NULL, 10);
      st->owned = strtoll(s.row[2], NULL, 10);
      st->events = strtoll(s.row[3], NULL, 10);
      st->timers = strtoll(s.row[4], NULL, 10);
      st->nodes = strtoll(s.row[5], NULL, 10);
    }
  }
out:
  close_session(&se);
  return r;
}
