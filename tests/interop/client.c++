// Interop 2: a unitsync client in C++, built against the C++ Cap'n Proto library from the
// wire contract only (`capnp compile -oc++ unitsync.capnp`).
//
//   client unix:/path/to/socket
//
// Drives a scenario with promise pipelining, prints one JSON object on stdout and exits 0; exits
// 1 (reason on stderr) if a call that must succeed fails or one that must fail succeeds.

#include "unitsync.capnp.h"

#include <capnp/ez-rpc.h>
#include <kj/debug.h>

#include <cstdio>
#include <string>

namespace {

std::string jsonString(kj::StringPtr text) {
  std::string out = "\"";
  for (char c: text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

const char* statusName(Status status) {
  switch (status) {
    case Status::NOT_REGISTERED: return "notRegistered";
    case Status::PENDING: return "pending";
    case Status::STARTED: return "started";
    case Status::COMPLETED: return "completed";
    case Status::FAILED: return "failed";
    case Status::SKIPPED: return "skipped";
    case Status::FINISHED: return "finished";
  }
  return "?";
}

std::string infoJson(UnitInfo::Reader info) {
  std::string out = "{\"name\": " + jsonString(info.getName());
  out += ", \"status\": \"" + std::string(statusName(info.getStatus())) + "\"";
  out += std::string(", \"ready\": ") + (info.getReady() ? "true" : "false");
  out += ", \"dependencies\": [";
  bool first = true;
  for (auto d: info.getDependencies()) {
    if (!first) out += ", ";
    first = false;
    out += "{\"dependsOn\": " + jsonString(d.getDependsOn());
    out += ", \"required\": \"" + std::string(statusName(d.getRequired())) + "\"";
    out += ", \"current\": \"" + std::string(statusName(d.getCurrent())) + "\"";
    out += std::string(", \"satisfied\": ") + (d.getSatisfied() ? "true" : "false") + "}";
  }
  return out + "]}";
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s unix:SOCKET_PATH\n", argv[0]);
    return 2;
  }
  try {
    capnp::EzRpcClient client(argv[1]);
    auto& waitScope = client.getWaitScope();
    auto coord = client.getMain<Coordinator>();

    auto version = coord.pingRequest().send().wait(waitScope);
    std::string out = "{\"version\": " + jsonString(version.getVersion());

    // Say which revision of the schema this client was built from: 2 knows skipped/finished.
    auto hello = coord.helloRequest();
    hello.setRevision(2);
    out += ", \"revision\": " + std::to_string(hello.send().wait(waitScope).getRevision());

    // unit("claude") -> want(["git"], completed) -> ready(), all sent before any answer: the
    // Unit capability is used through the pipelined promise of unit()'s result.
    auto claudeRequest = coord.unitRequest();
    claudeRequest.setName("claude");
    auto claude = claudeRequest.send().getUnit();

    auto want = claude.wantRequest();
    auto deps = want.initDependencies(1);
    deps.set(0, "git");
    want.setRequires(Status::COMPLETED);
    auto wanted = want.send();
    auto ready = claude.readyRequest().send();  // stays pending until git completes

    wanted.wait(waitScope);
    // Calls on one capability are delivered in order: this info() is answered after ready()
    // was received, and while git is still not registered ready() cannot have resolved.
    auto before = claude.infoRequest().send().wait(waitScope);
    out += ", \"before\": " + infoJson(before.getInfo());

    // git through another pipelined capability: start and complete without waiting in between.
    auto gitRequest = coord.unitRequest();
    gitRequest.setName("git");
    auto git = gitRequest.send().getUnit();
    auto started = git.startRequest().send();
    auto completed = git.completeRequest().send();
    started.wait(waitScope);
    completed.wait(waitScope);

    auto info = ready.wait(waitScope);
    out += ", \"ready\": " + infoJson(info.getInfo());

    // A cycle: git -> claude -> git. The call must fail.
    auto cycle = git.wantRequest();
    cycle.initDependencies(1).set(0, "claude");
    cycle.setRequires(Status::COMPLETED);
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { cycle.send().wait(waitScope); })) {
      out += ", \"cycle\": " + jsonString(e->getDescription());
      out += ", \"cycleType\": \"" + std::string(kj::str(e->getType()).cStr()) + "\"";
    } else {
      fprintf(stderr, "unexpected: git.want([claude]) succeeded\n");
      return 1;
    }

    // Revision 2: a report that runs whatever lint's outcome, and lint skipped.
    auto reportRequest = coord.unitRequest();
    reportRequest.setName("report");
    auto report = reportRequest.send().getUnit();
    auto lintRequest = coord.unitRequest();
    lintRequest.setName("lint");
    auto lint = lintRequest.send().getUnit();
    auto finished = report.wantRequest();
    finished.initDependencies(1).set(0, "lint");
    finished.setRequires(Status::FINISHED);
    finished.send().wait(waitScope);
    lint.registerRequest().send().wait(waitScope);
    auto skip = lint.skipRequest();
    skip.setReason("not needed");
    skip.send().wait(waitScope);
    auto reportInfo = report.infoRequest().send().wait(waitScope);
    out += ", \"report\": " + infoJson(reportInfo.getInfo());
    auto lintInfo = lint.infoRequest().send().wait(waitScope);
    out += ", \"lint\": " + infoJson(lintInfo.getInfo());

    printf("%s}\n", out.c_str());
    fflush(stdout);
    return 0;
  } catch (const kj::Exception& e) {
    fprintf(stderr, "unexpected: %s\n", kj::str(e).cStr());
    return 1;
  }
}
