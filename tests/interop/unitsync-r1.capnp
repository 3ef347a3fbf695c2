# The wire contract as revision 1 (commit c9104bd), kept to test that a client built from it
# still works against a newer coordinator (tests/test_interop.py). Never edit it.
# unitsync wire contract: compile this file to talk to a unitsync coordinator from any language.
#
# Transport: Cap'n Proto RPC (two-party, level 1) on a Unix stream socket; the bootstrap
# capability is a `Coordinator`. The interface, method and field names below are stable;
# new fields and methods are only ever appended (new ordinals).
#
# Errors are Cap'n Proto exceptions whose reason text starts with a stable code followed by a
# colon: unitsync.cycle, unitsync.dependency-failed, unitsync.not-ready, unitsync.not-found,
# unitsync.invalid-name, unitsync.invalid-argument, unitsync.already, unitsync.lagged,
# unitsync.closed.
@0xf3a2d8b04c9e1a57;

using import "/capnp/stream.capnp".StreamResult;

enum Status {
  notRegistered @0;
  pending @1;
  started @2;
  completed @3;
  failed @4;
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
  reason @3 :Text;         # the unit's own failure reason ("" unless failed)
  blockedBy @4 :Text;      # the failed unit keeping this one from becoming ready ("" if none)
  dependencies @5 :List(Dependency);   # sorted by dependsOn
}

struct Event {
  seq @0 :UInt64;          # coordinator-wide, +1 per status change
  timeNs @1 :Int64;        # wall clock, nanoseconds since the Unix epoch
  unit @2 :Text;
  old @3 :Status;
  new @4 :Status;
  reason @5 :Text;
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
  watch @4 (watcher :Watcher) -> (subscription :Subscription);   # dropping the subscription ends it
}

interface Unit {
  info @0 () -> (info :UnitInfo);
  want @1 (dependencies :List(Text), requires :Status) -> ();
    # requires: started | completed (left out, i.e. notRegistered: completed). Atomic: a cycle
    # refuses every dependency of the call.
  start @2 () -> ();
  complete @3 () -> ();
  fail @4 (reason :Text) -> ();
  ready @5 () -> (info :UnitInfo);     # resolves when ready; unitsync.dependency-failed when blocked
  reached @6 (status :Status) -> ();   # resolves when the unit's status reaches `status`
  hold @7 (resume :Bool) -> (lease :Lease);
    # start bound to the lease: released without complete/fail => failed "holder disconnected".
    # resume: take over a hold restored from the journal after a restart, whose holder has not
    # come back yet (the unit stays started); unitsync.not-held if there is none.
  register @8 () -> ();                # unitsync.already if registered
}

interface Watcher {
  event @0 (event :Event) -> stream;
}

interface Subscription {}

interface Lease {
  complete @0 () -> ();
  fail @1 (reason :Text) -> ();
}
