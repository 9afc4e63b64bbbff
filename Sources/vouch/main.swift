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
    "policy": policyCommand,
    "cert": certCommand,
    "host": hostCommand,
    "ca": caCommand,
    "check": checkCommand,
    "token": tokenCommand,
    "history": historyCommand,
]

let argv = Array(CommandLine.arguments.dropFirst())
guard let name = argv.first, name != "help", name != "--help", let command = commands[name] else {
    print(CLI.usage)
    exit(argv.isEmpty || argv.first == "help" || argv.first == "--help" ? 0 : 2)
}
do {
    exit(try command(Array(argv.dropFirst())))
} catch let f as APIFailure {
    CLI.error("\(name): refused (HTTP \(f.status)) \(f)")
    exit(1)
} catch let e as VouchError where e.code == .badRequest {
    CLI.error("\(name): \(e.message)\n\n\(CLI.usage)")
    exit(2)
} catch let e as VouchError {
    CLI.error("\(name): \(e)")
    exit(1)
} catch {
    CLI.error("\(name): \(error)")
    exit(1)
}
