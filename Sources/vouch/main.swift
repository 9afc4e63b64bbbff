// vouch: the command-line tool for operators, agents and relying parties.
import Foundation
import VouchAPI
import VouchCore

let commands: [String: ([String]) throws -> Int32] = [
    "enroll": enrollCommand,
    "status": statusCommand,
    "revoke": revokeCommand,
    "crl": crlCommand,
    "quote": quoteCommand,
    "eventlog": eventlogCommand,
    "evidence": evidenceCommand,
    "policy": policyCommand,
    "cert": certCommand,
    "host": hostCommand,
    "ca": caCommand,
    "check": checkCommand,
    "token": tokenCommand,
    "history": historyCommand,
    "log": logCommand,
    "trust": trustCommand,
    "receipt": receiptCommand,
    "model": modelCommand,
    "store": storeCommand,
]

let argv = Array(CommandLine.arguments.dropFirst())
guard let name = argv.first else {
    CLI.error(CLI.shortUsage)
    exit(2)
}
switch name {
case "help", "-h", "--help":
    // `vouch help COMMAND` is `vouch COMMAND --help`.
    if argv.count > 1, let text = CLI.commandHelp[argv[1]] { print(text) } else { print(CLI.usage) }
    exit(0)
case "--version", "version":
    print("vouch \(VouchVersion.current)")
    exit(0)
default:
    break
}
guard let command = commands[name] else {
    CLI.error("vouch: unknown command \(name) (vouch --help lists the commands)")
    exit(2)
}
let rest = Array(argv.dropFirst())
if Arguments.asksForHelp(rest) {
    print(CLI.commandHelp[name] ?? CLI.usage)
    exit(0)
}
// Errors are one line on stderr: usage errors exit 2 and point at the command's help; refusals
// and failures exit 1 and name the broker's error code when the broker refused.
do {
    exit(try command(rest))
} catch let f as APIFailure {
    let details = (f.error.violations ?? []).map { "\($0.path): expected \($0.expected), got \($0.actual)" }
    CLI.error("vouch \(name): refused by the broker (HTTP \(f.status), \(f.error.code)): \(([f.error.message] + details).joined(separator: "; "))")
    exit(1)
} catch let e as VouchError where e.code == .usage {
    CLI.error("vouch \(name): \(e.message) (see vouch \(name) --help)")
    exit(2)
} catch let e as VouchError {
    CLI.error("vouch \(name): \(CLI.oneLine(e.message))")
    exit(1)
} catch {
    CLI.error("vouch \(name): \(CLI.oneLine("\(error)"))")
    exit(1)
}
