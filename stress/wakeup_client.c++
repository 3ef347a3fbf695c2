// The waiters of `python -m stress wakeup`, in C++ (built by stress/_cxx.py from the wire
// contract, schema/unitsync.capnp): the same protocol as `python -m stress._wakeup_client
// waiters`, at a fraction of its CPU. These processes share the two cores with the server they
// measure, so the less they spend on a wake-up, the more the figures are the server's.
//
//   wakeup_client SOCKET FIRST COUNT ROUNDS TIMEOUT REVISION
//
// Opens COUNT connections to the Unix socket SOCKET (each says hello(REVISION)); per round r
// (0..ROUNDS-1) parks ready() of unit w{FIRST+i} (round 0) or w{FIRST+i}.{r} on connection i,
// then info() of the same unit on the same capability (E-order: once it is answered, ready()
// is parked server-side); prints "parked" when every info() is answered, then, once every
// ready() has resolved (or TIMEOUT seconds have passed), one JSON object:
//   {"role": "waiters", "round": r, "first": FIRST, "count": COUNT,
//    "stamps": [CLOCK_MONOTONIC seconds when ready() of unit i resolved, or null],
//    "errors": ["unit: error", ...]}
// and, before parking the next round, waits for a line on stdin (the driver's go: the next
// round's calls must not land in this round's fan-out). Exit 0; 1 (reason on stderr) if the
// connections cannot be made or stdin ends early.

#include "unitsync.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

double monotonic() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

std::string jsonString(const std::string& text) {
  std::string out = "\"";
  for (char c: text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string unitName(long index, int round) {
  std::string name = "w" + std::to_string(index);
  return round == 0 ? name : name + "." + std::to_string(round);
}

struct Connection {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> client;
  Coordinator::Client coord;
};

struct Round {
  std::vector<double> stamps;  // < 0: not woken
  std::vector<std::string> errors;
};

void report(int round, long first, const Round& result) {
  std::string out = "{\"role\": \"waiters\", \"round\": " + std::to_string(round);
  out += ", \"first\": " + std::to_string(first);
  out += ", \"count\": " + std::to_string(result.stamps.size()) + ", \"stamps\": [";
  char buf[32];
  for (size_t i = 0; i < result.stamps.size(); i++) {
    if (i) out += ", ";
    if (result.stamps[i] < 0) {
      out += "null";
    } else {
      snprintf(buf, sizeof(buf), "%.9f", result.stamps[i]);
      out += buf;
    }
  }
  out += "], \"errors\": [";
  for (size_t i = 0; i < result.errors.size(); i++) {
    if (i) out += ", ";
    out += jsonString(result.errors[i]);
  }
  printf("%s]}\n", out.c_str());
  fflush(stdout);
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s SOCKET FIRST COUNT ROUNDS TIMEOUT REVISION\n", argv[0]);
    return 2;
  }
  const std::string socket = argv[1];
  const long first = atol(argv[2]);
  const long count = atol(argv[3]);
  const int rounds = atoi(argv[4]);
  const double timeout = atof(argv[5]);
  const unsigned revision = static_cast<unsigned>(atol(argv[6]));

  auto io = kj::setupAsyncIo();
  auto& waitScope = io.waitScope;
  std::vector<Connection> connections;
  connections.reserve(count);
  try {
    auto address = io.provider->getNetwork().parseAddress(kj::str("unix:", socket.c_str()))
                       .wait(waitScope);
    for (long i = 0; i < count; i++) {
      // one at a time, each answered: a full listen backlog never refuses the next
      auto stream = address->connect().wait(waitScope);
      auto client = kj::heap<capnp::TwoPartyClient>(*stream);
      auto coord = client->bootstrap().castAs<Coordinator>();
      auto hello = coord.helloRequest();
      hello.setRevision(revision);
      hello.send().wait(waitScope);
      connections.push_back(Connection{kj::mv(stream), kj::mv(client), kj::mv(coord)});
    }
  } catch (const kj::Exception& e) {
    fprintf(stderr, "wakeup client: cannot connect to %s: %s\n", socket.c_str(),
            kj::str(e).cStr());
    return 1;
  }

  for (int round = 0; round < rounds; round++) {
    Round result;
    result.stamps.assign(count, -1.0);
    std::vector<std::string> names;
    names.reserve(count);
    kj::Vector<kj::Promise<void>> readies(count);
    kj::Vector<kj::Promise<void>> parked(count);
    for (long i = 0; i < count; i++) {
      names.push_back(unitName(first + i, round));
      auto request = connections[i].coord.unitRequest();
      request.setName(names[i]);
      auto unit = request.send().getUnit();  // pipelined
      readies.add(unit.readyRequest().send().then(
          [&result, &names, i](capnp::Response<Unit::ReadyResults>&& response) {
            double stamp = monotonic();
            if (response.getInfo().getReady()) {
              result.stamps[i] = stamp;
            } else {
              result.errors.push_back(names[i] + ": ready() answered ready=False");
            }
          },
          [&result, &names, i](kj::Exception&& e) {
            result.errors.push_back(names[i] + ": " + e.getDescription().cStr());
          }));
      parked.add(unit.infoRequest().send().then(
          [&result, &names, i](capnp::Response<Unit::InfoResults>&&) {
            if (result.stamps[i] >= 0) {
              result.errors.push_back(names[i] +
                                      ": ready() resolved before the dependency completed");
            }
          },
          [&result, &names, i](kj::Exception&& e) {
            result.errors.push_back(names[i] + ": info: " + e.getDescription().cStr());
          }));
    }
    kj::joinPromises(parked.releaseAsArray()).wait(waitScope);
    printf("parked\n");
    fflush(stdout);
    auto woken = io.provider->getTimer().timeoutAfter(
        static_cast<uint64_t>(timeout * 1e9) * kj::NANOSECONDS,
        kj::joinPromises(readies.releaseAsArray()));
    try {
      woken.wait(waitScope);
    } catch (const kj::Exception& e) {
      long left = 0;
      for (double stamp: result.stamps) left += stamp < 0;
      result.errors.push_back("timed out after " + std::to_string(timeout) + " s with " +
                              std::to_string(left) + " waiters not woken");
    }
    report(round, first, result);
    char go[64];
    if (round + 1 < rounds && fgets(go, sizeof(go), stdin) == nullptr) {
      fprintf(stderr, "wakeup client: stdin ended before round %d\n", round + 1);
      return 1;
    }
  }
  return 0;
}
