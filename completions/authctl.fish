# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_authctl_global_optspecs
    string join \n config= database-url= log-level= log-format= h/help V/version
end

function __fish_authctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_authctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_authctl_using_subcommand
    set -l cmd (__fish_authctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c authctl -n "__fish_authctl_needs_command" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_needs_command" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_needs_command" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_needs_command" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_needs_command" -s V -l version -d 'Print version'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "serve" -d 'Run the REST API (migrates the database first unless --no-migrate)'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "migrate" -d 'Apply pending database migrations, or list them with --status'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "user" -d 'Manage users'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "token" -d 'Inspect, revoke and prune tokens'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "audit" -d 'Read the audit log'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "apikey" -d 'Create, list and revoke API keys for services (the admin API, introspection)'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "client" -d 'Register and manage the applications that sign in with authctl (OpenID Connect)'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "health" -d 'Probe a running server; exit 0 when healthy, 1 when not or unreachable'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "keys" -d 'List, rotate and retire the signing keys'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "config" -d 'Check the configuration and show the effective settings, secrets redacted'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "email"
complete -c authctl -n "__fish_authctl_needs_command" -f -a "db" -d 'Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "openapi" -d 'Print the OpenAPI document (no server needed)'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "generate-assets" -d 'Write completions/ and man/ from these definitions (for maintainers)'
complete -c authctl -n "__fish_authctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand serve" -l bind -d 'Address to listen on [env: AUTHCTL_BIND] [default: 127.0.0.1:8000]' -r
complete -c authctl -n "__fish_authctl_using_subcommand serve" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand serve" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand serve" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand serve" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand serve" -l no-migrate -d 'Do not migrate; wait until the schema is current instead'
complete -c authctl -n "__fish_authctl_using_subcommand serve" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -l status -d 'List applied and pending migrations instead of applying them'
complete -c authctl -n "__fish_authctl_using_subcommand migrate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "add" -d 'Create a user (password from --password-stdin or a no-echo prompt)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "list" -d 'List users'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "disable" -d 'Disable a user and revoke all of their sessions'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "enable" -d 'Enable a disabled user'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "delete" -d 'Delete a user with all sessions and tokens'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "set-password" -d 'Set a user\'s password and revoke all of their sessions'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "show" -d 'Show a user with failed logins and any lock'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "unlock" -d 'End a user\'s lockout (failed logins and lock cleared)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "mfa-reset" -d 'Remove a user\'s TOTP and recovery codes (an operator\'s recovery; audited)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "sessions" -d 'List a user\'s live sessions'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "verify" -d 'Mark a user\'s email address verified'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "reset-link" -d 'Issue a password reset token for an operator to pass on (works without email)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "import" -d 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "export" -d 'Export users as JSON Lines (no password hashes unless --with-hashes)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "role" -d 'Give or take away roles'
complete -c authctl -n "__fish_authctl_using_subcommand user; and not __fish_seen_subcommand_from add list disable enable delete set-password show unlock mfa-reset sessions verify reset-link import export role help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l email -d 'Email address (unique, case-insensitive)' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l username -d 'Username: 3-32 of A-Z a-z 0-9 _ . - (unique, case-insensitive)' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l role -d 'Give the user this role (repeatable): [a-z][a-z0-9_.:-]{0,63}' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -l inactive -d 'Create the user disabled'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l limit -d 'Show at most this many users' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l role -d 'Only users holding this role' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from set-password" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from set-password" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from set-password" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from set-password" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from set-password" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from set-password" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from show" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from show" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from show" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from show" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from unlock" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from unlock" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from unlock" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from unlock" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from unlock" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from unlock" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from mfa-reset" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from mfa-reset" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from mfa-reset" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from mfa-reset" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from mfa-reset" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from mfa-reset" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from sessions" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from sessions" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from sessions" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from sessions" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from sessions" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from sessions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from verify" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from verify" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from verify" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from verify" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from verify" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from reset-link" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from reset-link" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from reset-link" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from reset-link" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from reset-link" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from reset-link" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l on-conflict -d 'What a line matching an existing account (by email or username) does' -r -f -a "skip\t''
update\t''
error\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -l dry-run -d 'Check every line and report what would happen; write nothing'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from export" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from export" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from export" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from export" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from export" -l with-hashes -d 'Include the password hashes'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -f -a "add" -d 'Give a user roles (tokens issued from now on carry them)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -f -a "remove" -d 'Take roles away from a user'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from role" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "add" -d 'Create a user (password from --password-stdin or a no-echo prompt)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "list" -d 'List users'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Disable a user and revoke all of their sessions'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Enable a disabled user'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a user with all sessions and tokens'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "set-password" -d 'Set a user\'s password and revoke all of their sessions'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a user with failed logins and any lock'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "unlock" -d 'End a user\'s lockout (failed logins and lock cleared)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "mfa-reset" -d 'Remove a user\'s TOTP and recovery codes (an operator\'s recovery; audited)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "sessions" -d 'List a user\'s live sessions'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Mark a user\'s email address verified'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "reset-link" -d 'Issue a password reset token for an operator to pass on (works without email)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "import" -d 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "export" -d 'Export users as JSON Lines (no password hashes unless --with-hashes)'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "role" -d 'Give or take away roles'
complete -c authctl -n "__fish_authctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -f -a "inspect" -d 'Verify a token and show what it is: claims, family, user, state'
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -f -a "revoke-family" -d 'Revoke a token family (session), or all of a user\'s'
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -f -a "prune" -d 'Delete expired tokens and long-revoked sessions'
complete -c authctl -n "__fish_authctl_using_subcommand token; and not __fish_seen_subcommand_from inspect revoke-family prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l token -d 'Revoke the family of this access or refresh token (`-` reads standard input)' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l user -d 'Revoke every family of this user (id, email or username)' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from revoke-family" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from prune" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from prune" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from prune" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from prune" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from prune" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "inspect" -d 'Verify a token and show what it is: claims, family, user, state'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "revoke-family" -d 'Revoke a token family (session), or all of a user\'s'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Delete expired tokens and long-revoked sessions'
complete -c authctl -n "__fish_authctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'List audit events, newest first'
complete -c authctl -n "__fish_authctl_using_subcommand audit; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l user -d 'Only events about this user: a numeric id (also of a deleted user), an email or a username' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l kind -d 'Only events of this kind' -r -f -a "user_registered\t''
user_created\t''
login_succeeded\t''
login_failed\t''
login_locked\t'A login refused because the account is locked'
account_locked\t'An account reached the lockout threshold'
account_unlocked\t''
refresh_reuse_detected\t''
session_revoked\t''
password_changed\t''
user_disabled\t''
user_enabled\t''
user_deleted\t''
keys_rotated\t''
key_retired\t''
email_verification_sent\t'A verification message was queued in the outbox (SPEC §13)'
email_verified\t''
password_reset_requested\t'A reset message was queued, or an operator issued a reset link'
password_reset\t''
mfa_enabled\t'TOTP confirmed (SPEC §14)'
mfa_disabled\t'TOTP removed, by its user or an operator (`user mfa-reset`)'
mfa_failed\t'A wrong second-factor code'
recovery_code_used\t''
user_imported\t'One `user import` run, with its counts (SPEC §16)'
apikey_created\t'An API key was created (SPEC §15)'
apikey_revoked\t''
user_updated\t'A user\'s email, username, verification or roles changed (admin API, `user role`)'
oidc_login\t'A login through the OpenID Connect provider issued a client its tokens (§18)'
oidc_code_reuse\t'An authorization code came back after its first use: what it issued is revoked'
client_created\t''
client_removed\t''"
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l since -d 'Only events of the last DURATION (e.g. 15m, 24h, 7d)' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l limit -d 'Show at most this many events' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "list" -d 'List audit events, newest first'
complete -c authctl -n "__fish_authctl_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -f -a "create" -d 'Create a key with the given scopes and print it once'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -f -a "list" -d 'List the keys (never the keys themselves)'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -f -a "revoke" -d 'Revoke a key: refused at once, by every server on the database'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and not __fish_seen_subcommand_from create list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l name -d 'A name that says which service holds the key' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l scope -d 'What the key may do (repeatable; none implies another)' -r -f -a "users:read\t''
users:write\t''
sessions:write\t''
audit:read\t''
introspect\t''"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l expires -d 'Expire the key after this long (e.g. 90d); default: no expiry' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from list" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from list" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from list" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from revoke" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from revoke" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from revoke" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from revoke" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from revoke" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a key with the given scopes and print it once'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the keys (never the keys themselves)'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a key: refused at once, by every server on the database'
complete -c authctl -n "__fish_authctl_using_subcommand apikey; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -f -a "add" -d 'Register a client; prints its client_id (and, unless --public, its secret once)'
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -f -a "list" -d 'List the clients (never their secrets)'
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -f -a "remove" -d 'Remove a client: its sessions end and its tokens are refused at once'
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -f -a "rotate-secret" -d 'Give a confidential client a new secret; the old one fails from now on'
complete -c authctl -n "__fish_authctl_using_subcommand client; and not __fish_seen_subcommand_from add list remove rotate-secret help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l name -d 'A name people see on the login page ("to continue to NAME")' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l redirect-uri -d 'A redirect URI, compared as an exact string (repeatable); http://127.0.0.1/… and http://[::1]/… match any port (RFC 8252)' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l post-logout-redirect-uri -d 'Where RP-initiated logout may send the browser back to (repeatable, exact)' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l id-token-alg -d 'The ID token\'s signing algorithm' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -l public -d 'A public client (an SPA, a mobile app): no secret, PKCE only'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from list" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from list" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from list" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from remove" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from remove" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from remove" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from remove" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from remove" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from rotate-secret" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from rotate-secret" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from rotate-secret" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from rotate-secret" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from rotate-secret" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from rotate-secret" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "add" -d 'Register a client; prints its client_id (and, unless --public, its secret once)'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the clients (never their secrets)'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a client: its sessions end and its tokens are refused at once'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "rotate-secret" -d 'Give a confidential client a new secret; the old one fails from now on'
complete -c authctl -n "__fish_authctl_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand health" -l url -d 'Base URL of the server [default: http://127.0.0.1:<port of the configured bind>]' -r
complete -c authctl -n "__fish_authctl_using_subcommand health" -l check -d 'Which probe to ask' -r -f -a "liveness\t'The process is up'
readiness\t'The database answers and the schema is current'
startup\t'Startup (config, migrations, key) has finished'"
complete -c authctl -n "__fish_authctl_using_subcommand health" -l timeout -d 'Give up after this long (e.g. 3s, 500ms)' -r
complete -c authctl -n "__fish_authctl_using_subcommand health" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand health" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand health" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand health" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand health" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -f -a "list" -d 'List the signing keys: kid, algorithm, state (current, previous, retired)'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -f -a "rotate" -d 'Make a new current signing key; the previous one verifies until its tokens expire'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -f -a "retire" -d 'Stop trusting a key now (a leaked key): its tokens are refused at once'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and not __fish_seen_subcommand_from list rotate retire help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from list" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from list" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from list" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from list" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l algorithm -d 'Algorithm of the new key (HS256, HS384, HS512, EdDSA, ES256) [default: the configured ALGORITHM]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l id-token -d 'Rotate the OpenID Connect provider\'s ID-token key of this algorithm instead (RS256, EdDSA, ES256) [default when given without a value: RS256]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from retire" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from retire" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from retire" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from retire" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from retire" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from retire" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the signing keys: kid, algorithm, state (current, previous, retired)'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Make a new current signing key; the previous one verifies until its tokens expire'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "retire" -d 'Stop trusting a key now (a leaked key): its tokens are refused at once'
complete -c authctl -n "__fish_authctl_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Validate the configuration and print the effective settings, secrets redacted'
complete -c authctl -n "__fish_authctl_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from check" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from check" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from check" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from check" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate the configuration and print the effective settings, secrets redacted'
complete -c authctl -n "__fish_authctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -f -a "test" -d 'Send one test message now, synchronously (exit 1 with the server\'s reply)'
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -f -a "outbox" -d 'List the outbox: id, kind, recipient, state, attempts, next try, last error'
complete -c authctl -n "__fish_authctl_using_subcommand email; and not __fish_seen_subcommand_from test outbox help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from test" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from test" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from test" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from test" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -l limit -d 'Show at most this many messages, newest first' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from outbox" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from help" -f -a "test" -d 'Send one test message now, synchronously (exit 1 with the server\'s reply)'
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from help" -f -a "outbox" -d 'List the outbox: id, kind, recipient, state, attempts, next try, last error'
complete -c authctl -n "__fish_authctl_using_subcommand email; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -f -a "backup" -d 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump'
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -f -a "copy" -d 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first'
complete -c authctl -n "__fish_authctl_using_subcommand db; and not __fish_seen_subcommand_from backup copy help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from backup" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from backup" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from backup" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from backup" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -l to -d 'The target database: sqlite://PATH or postgres://… (it must hold no user) [env: AUTHCTL_COPY_TO, which keeps a password out of the process list]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -l output -r -f -a "table\t'Aligned table for people'
json\t'One JSON document for scripts'"
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from copy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump'
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "copy" -d 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first'
complete -c authctl -n "__fish_authctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand completions" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand completions" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand completions" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand completions" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand openapi" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand openapi" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand openapi" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand openapi" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand openapi" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand generate-assets" -l dir -d 'Project directory that holds completions/ and man/' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand generate-assets" -l config -d 'Read settings from this TOML file (default: ./authctl.toml if present)' -r -F
complete -c authctl -n "__fish_authctl_using_subcommand generate-assets" -l database-url -d 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand generate-assets" -l log-level -d 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]' -r
complete -c authctl -n "__fish_authctl_using_subcommand generate-assets" -l log-format -d 'Log line format [env: AUTHCTL_LOG_FORMAT]' -r -f -a "text\t''
json\t''"
complete -c authctl -n "__fish_authctl_using_subcommand generate-assets" -s h -l help -d 'Print help'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "serve" -d 'Run the REST API (migrates the database first unless --no-migrate)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "migrate" -d 'Apply pending database migrations, or list them with --status'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "user" -d 'Manage users'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "token" -d 'Inspect, revoke and prune tokens'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "audit" -d 'Read the audit log'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "apikey" -d 'Create, list and revoke API keys for services (the admin API, introspection)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "client" -d 'Register and manage the applications that sign in with authctl (OpenID Connect)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "health" -d 'Probe a running server; exit 0 when healthy, 1 when not or unreachable'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "keys" -d 'List, rotate and retire the signing keys'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "config" -d 'Check the configuration and show the effective settings, secrets redacted'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "email"
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "db" -d 'Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "completions" -d 'Print a shell completion script'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "openapi" -d 'Print the OpenAPI document (no server needed)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "generate-assets" -d 'Write completions/ and man/ from these definitions (for maintainers)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and not __fish_seen_subcommand_from serve migrate user token audit apikey client health keys config email db completions openapi generate-assets help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "add" -d 'Create a user (password from --password-stdin or a no-echo prompt)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "list" -d 'List users'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "disable" -d 'Disable a user and revoke all of their sessions'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "enable" -d 'Enable a disabled user'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "delete" -d 'Delete a user with all sessions and tokens'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "set-password" -d 'Set a user\'s password and revoke all of their sessions'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "show" -d 'Show a user with failed logins and any lock'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "unlock" -d 'End a user\'s lockout (failed logins and lock cleared)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "mfa-reset" -d 'Remove a user\'s TOTP and recovery codes (an operator\'s recovery; audited)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "sessions" -d 'List a user\'s live sessions'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "verify" -d 'Mark a user\'s email address verified'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "reset-link" -d 'Issue a password reset token for an operator to pass on (works without email)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "import" -d 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "export" -d 'Export users as JSON Lines (no password hashes unless --with-hashes)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from user" -f -a "role" -d 'Give or take away roles'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "inspect" -d 'Verify a token and show what it is: claims, family, user, state'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "revoke-family" -d 'Revoke a token family (session), or all of a user\'s'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "prune" -d 'Delete expired tokens and long-revoked sessions'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "list" -d 'List audit events, newest first'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from apikey" -f -a "create" -d 'Create a key with the given scopes and print it once'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from apikey" -f -a "list" -d 'List the keys (never the keys themselves)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from apikey" -f -a "revoke" -d 'Revoke a key: refused at once, by every server on the database'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "add" -d 'Register a client; prints its client_id (and, unless --public, its secret once)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "list" -d 'List the clients (never their secrets)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "remove" -d 'Remove a client: its sessions end and its tokens are refused at once'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "rotate-secret" -d 'Give a confidential client a new secret; the old one fails from now on'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "list" -d 'List the signing keys: kid, algorithm, state (current, previous, retired)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "rotate" -d 'Make a new current signing key; the previous one verifies until its tokens expire'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "retire" -d 'Stop trusting a key now (a leaked key): its tokens are refused at once'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Validate the configuration and print the effective settings, secrets redacted'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from email" -f -a "test" -d 'Send one test message now, synchronously (exit 1 with the server\'s reply)'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from email" -f -a "outbox" -d 'List the outbox: id, kind, recipient, state, attempts, next try, last error'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "backup" -d 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump'
complete -c authctl -n "__fish_authctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "copy" -d 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first'
