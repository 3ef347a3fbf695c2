# unitsync wire contract: compile this file to talk to a unitsync coordinator from any language.
#
# Transport: Cap'n Proto RPC (two-party, level 1) on a Unix stream socket; the bootstrap
# capability is a `Coordinator`. The interface, method and field names below are stable;
# new fields and methods are only ever appended (new ordinals).
#
# Errors are Cap'n Proto exceptions whose reason text contains a stable code followed by ": "
# (find it with the regular expression `unitsync\.[a-z-]+: `): unitsync.cycle,
# unitsync.dependency-failed, unitsync.not-ready, unitsync.not-found, unitsync.invalid-name,
# unitsync.invalid-argument, unitsync.already, unitsync.not-held, unitsync.lagged,
# unitsync.closed, unitsync.overloaded, unitsync.unavailable (a store shared by several
# coordinators did not confirm the change), and unitsync.error for anything else (a bug).
@0xf3a2d8b04c9e1a57;

using import "/capnp/stream.capnp".StreamResult;

enum Status {
  notRegistered @0;
  pending @1;
  started @2;
  completed @3;
  failed @4;
  skipped @5;     # revision 2: did not run (a dependency failed or was skipped, or `skip`)
  finished @6;    # revision 2: never a unit's status; the requirement (or the status to wait
                  # for) that any outcome meets: completed, failed or skipped
}

struct Dependency {
  dependsOn @0 :Text;
  required @1 :Status;
  current @2 :Status;
  satisfied @3 :Bool;
}

struct UnitInfo {
  name @0 :Text;
  status @1 :Status;
  ready @2 :Bool;
  reason @3 :Text;         # the unit's own reason ("" unless failed or skipped)
  blockedBy @4 :Text;      # the failed or skipped unit at the root of the chain that keeps
                           # this one from becoming ready ("" if none)
  dependencies @5 :List(Dependency);   # sorted by dependsOn
}

struct Event {
  # One change in the coordinator's history: a status change (unit went old -> new), or, from
  # revision 3, an edge added (dependsOn is set: unit now requires dependsOn to reach requires;
  # old and new are both the unit's status then). Connections speaking revision 1 or 2 are
  # sent status changes only.
  seq @0 :UInt64;          # coordinator-wide, increasing (edges take seqs too: a revision-1/2
                           # watcher sees gaps); kept across restarts with the journal. With a
                           # store shared by several coordinators (serve --store): the store's
                           # revision * 2^20 + the event's place in it, increasing with gaps,
                           # the same on every coordinator (seq >> 20 is the revision)
  timeNs @1 :Int64;        # wall clock, nanoseconds since the Unix epoch
  unit @2 :Text;
  old @3 :Status;
  new @4 :Status;
  reason @5 :Text;
  dependsOn @6 :Text;      # revision 3: "" for a status change
  requires @7 :Status;     # revision 3: started | completed | finished, for an edge
}

struct Requirement {
  # revision 3: one edge of an `apply`: the unit needs dependsOn to reach requires.
  dependsOn @0 :Text;
  requires @1 :Status;     # started | completed | finished (left out: completed)
}

struct UnitSpec {
  # revision 3: one unit of an `apply` and its edges.
  name @0 :Text;
  requires @1 :List(Requirement);
}

interface Coordinator {
  # The bootstrap capability.
  ping @0 () -> (version :Text);
  unit @1 (name :Text) -> (unit :Unit);          # a handle; does not register the unit
  list @2 (after :Text, limit :UInt32) -> (units :List(UnitInfo), more :Bool);
    # registered units, sorted by name, whose names sort after `after` ("": all). limit 0 (no
    # arguments): all of them in one message, which fails past Cap'n Proto's 8 MiB message
    # limit (~50,000 units). Paged: at most `limit` and ~4 MiB of them; `more` is true when
    # units remain after the last (ask again with its name as `after`).
  graph @3 () -> (dot :Text);                    # Graphviz DOT
  watch @4 (watcher :Watcher, replay :Bool, after :UInt64) -> (subscription :Subscription);
    # Dropping the subscription ends it. Events from now on; revision 3: with replay, first
    # every kept event after seq `after`, then live ones, with no gap and no duplicate (the
    # history no longer keeps those events: the stream ends with unitsync.lagged).
  hello @5 (revision :UInt32) -> (revision :UInt32);
    # Call it first with the revision of this file your client was built from (3 here). The
    # connection then speaks the lower of yours and the server's, which it answers. Without a
    # hello a connection speaks revision 1, the first contract: a skipped unit is sent as
    # failed, a finished requirement as completed (so old clients never see a value they do
    # not know). An old server answers hello with Cap'n Proto's "unimplemented": revision 1.
  history @6 (after :UInt64, limit :UInt32, unit :Text, newest :Bool)
      -> (events :List(Event), more :Bool, oldest :UInt64, last :UInt64);
    # revision 3: the kept history (the newest `serve --history N` events), in seq order: the
    # events after seq `after` (of `unit` only, unless ""), the first `limit` of them, or with
    # `newest` the last `limit` (0, or more than 2,000: 2,000). more: events remain beyond
    # this page (after it; with newest, before it): page on with the last seq as `after`.
    # oldest: the oldest kept seq (0: none); last: the seq of the newest event published.
  apply @7 (units :List(UnitSpec)) -> ();
    # revision 3: register every unit (pending, if it is not registered) and add every edge,
    # as one step: a cycle anywhere (unitsync.cycle) or too many units (unitsync.overloaded)
    # changes nothing. Applying the same units again changes nothing. At most 10,000 units
    # and 1,000 requirements per unit (unitsync.invalid-argument).
}

interface Unit {
  info @0 () -> (info :UnitInfo);
  want @1 (dependencies :List(Text), requires :Status) -> ();
    # requires: started | completed | finished (left out, i.e. notRegistered: completed).
    # Atomic: a cycle refuses every dependency of the call.
  start @2 () -> ();
  complete @3 () -> ();
  fail @4 (reason :Text) -> ();
  ready @5 () -> (info :UnitInfo);     # resolves when ready; unitsync.dependency-failed when blocked
  reached @6 (status :Status) -> ();   # resolves when the unit's status reaches `status`
  hold @7 (resume :Bool, wait :Bool) -> (lease :Lease);
    # start bound to the lease: released without complete/fail => failed "holder disconnected".
    # resume: take over a hold restored from the journal after a restart, whose holder has not
    # come back yet (the unit stays started); unitsync.not-held if there is none.
    # revision 4, wait: first wait until the unit is ready, as `ready` does (parked, counted
    # among the connection's waiters; unitsync.dependency-failed when blocked), then hold it:
    # both in the coordinator, no round trip between them. Not with resume
    # (unitsync.invalid-argument). A coordinator of an older revision ignores `wait`.
  register @8 () -> ();                # unitsync.already if registered
  skip @9 (reason :Text) -> ();
    # revision 2: mark skipped (it did not run); only a unit that has not started, else
    # unitsync.already. Like failed, it meets only `finished` and can be re-run with start.
}

interface Watcher {
  event @0 (event :Event) -> stream;
}

interface Subscription {}

interface Lease {
  complete @0 () -> ();
  fail @1 (reason :Text) -> ();
}
