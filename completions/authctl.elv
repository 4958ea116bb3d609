
use builtin;
use str;

set edit:completion:arg-completer[authctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'authctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'authctl'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand serve 'Run the REST API (migrates the database first unless --no-migrate)'
            cand migrate 'Apply pending database migrations, or list them with --status'
            cand user 'Manage users'
            cand token 'Inspect, revoke and prune tokens'
            cand audit 'Read the audit log'
            cand apikey 'Create, list and revoke API keys for services (the admin API, introspection)'
            cand client 'Register and manage the applications that sign in with authctl (OpenID Connect)'
            cand health 'Probe a running server; exit 0 when healthy, 1 when not or unreachable'
            cand keys 'List, rotate and retire the signing keys'
            cand config 'Check the configuration and show the effective settings, secrets redacted'
            cand email 'email'
            cand db 'Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)'
            cand completions 'Print a shell completion script'
            cand openapi 'Print the OpenAPI document (no server needed)'
            cand generate-assets 'Write completions/ and man/ from these definitions (for maintainers)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;serve'= {
            cand --bind 'Address to listen on [env: AUTHCTL_BIND] [default: 127.0.0.1:8000]'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --no-migrate 'Do not migrate; wait until the schema is current instead'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;migrate'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --status 'List applied and pending migrations instead of applying them'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand add 'Create a user (password from --password-stdin or a no-echo prompt)'
            cand list 'List users'
            cand disable 'Disable a user and revoke all of their sessions'
            cand enable 'Enable a disabled user'
            cand delete 'Delete a user with all sessions and tokens'
            cand set-password 'Set a user''s password and revoke all of their sessions'
            cand show 'Show a user with failed logins and any lock'
            cand unlock 'End a user''s lockout (failed logins and lock cleared)'
            cand mfa-reset 'Remove a user''s TOTP and recovery codes (an operator''s recovery; audited)'
            cand sessions 'List a user''s live sessions'
            cand verify 'Mark a user''s email address verified'
            cand reset-link 'Issue a password reset token for an operator to pass on (works without email)'
            cand import 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes'
            cand export 'Export users as JSON Lines (no password hashes unless --with-hashes)'
            cand role 'Give or take away roles'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;user;add'= {
            cand --email 'Email address (unique, case-insensitive)'
            cand --username 'Username: 3-32 of A-Z a-z 0-9 _ . - (unique, case-insensitive)'
            cand --role 'Give the user this role (repeatable): [a-z][a-z0-9_.:-]{0,63}'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --inactive 'Create the user disabled'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;list'= {
            cand --output 'output'
            cand --limit 'Show at most this many users'
            cand --role 'Only users holding this role'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;disable'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;enable'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;delete'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;set-password'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;user;show'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;unlock'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;mfa-reset'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;sessions'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;verify'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;reset-link'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;import'= {
            cand --on-conflict 'What a line matching an existing account (by email or username) does'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --dry-run 'Check every line and report what would happen; write nothing'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;export'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --with-hashes 'Include the password hashes'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;user;role'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand add 'Give a user roles (tokens issued from now on carry them)'
            cand remove 'Take roles away from a user'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;user;role;add'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;role;remove'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;user;role;help'= {
            cand add 'Give a user roles (tokens issued from now on carry them)'
            cand remove 'Take roles away from a user'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;user;role;help;add'= {
        }
        &'authctl;user;role;help;remove'= {
        }
        &'authctl;user;role;help;help'= {
        }
        &'authctl;user;help'= {
            cand add 'Create a user (password from --password-stdin or a no-echo prompt)'
            cand list 'List users'
            cand disable 'Disable a user and revoke all of their sessions'
            cand enable 'Enable a disabled user'
            cand delete 'Delete a user with all sessions and tokens'
            cand set-password 'Set a user''s password and revoke all of their sessions'
            cand show 'Show a user with failed logins and any lock'
            cand unlock 'End a user''s lockout (failed logins and lock cleared)'
            cand mfa-reset 'Remove a user''s TOTP and recovery codes (an operator''s recovery; audited)'
            cand sessions 'List a user''s live sessions'
            cand verify 'Mark a user''s email address verified'
            cand reset-link 'Issue a password reset token for an operator to pass on (works without email)'
            cand import 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes'
            cand export 'Export users as JSON Lines (no password hashes unless --with-hashes)'
            cand role 'Give or take away roles'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;user;help;add'= {
        }
        &'authctl;user;help;list'= {
        }
        &'authctl;user;help;disable'= {
        }
        &'authctl;user;help;enable'= {
        }
        &'authctl;user;help;delete'= {
        }
        &'authctl;user;help;set-password'= {
        }
        &'authctl;user;help;show'= {
        }
        &'authctl;user;help;unlock'= {
        }
        &'authctl;user;help;mfa-reset'= {
        }
        &'authctl;user;help;sessions'= {
        }
        &'authctl;user;help;verify'= {
        }
        &'authctl;user;help;reset-link'= {
        }
        &'authctl;user;help;import'= {
        }
        &'authctl;user;help;export'= {
        }
        &'authctl;user;help;role'= {
            cand add 'Give a user roles (tokens issued from now on carry them)'
            cand remove 'Take roles away from a user'
        }
        &'authctl;user;help;role;add'= {
        }
        &'authctl;user;help;role;remove'= {
        }
        &'authctl;user;help;help'= {
        }
        &'authctl;token'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand inspect 'Verify a token and show what it is: claims, family, user, state'
            cand revoke-family 'Revoke a token family (session), or all of a user''s'
            cand prune 'Delete expired tokens and long-revoked sessions'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;token;inspect'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;token;revoke-family'= {
            cand --token 'Revoke the family of this access or refresh token (`-` reads standard input)'
            cand --user 'Revoke every family of this user (id, email or username)'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;token;prune'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;token;help'= {
            cand inspect 'Verify a token and show what it is: claims, family, user, state'
            cand revoke-family 'Revoke a token family (session), or all of a user''s'
            cand prune 'Delete expired tokens and long-revoked sessions'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;token;help;inspect'= {
        }
        &'authctl;token;help;revoke-family'= {
        }
        &'authctl;token;help;prune'= {
        }
        &'authctl;token;help;help'= {
        }
        &'authctl;audit'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand list 'List audit events, newest first'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;audit;list'= {
            cand --user 'Only events about this user: a numeric id (also of a deleted user), an email or a username'
            cand --kind 'Only events of this kind'
            cand --since 'Only events of the last DURATION (e.g. 15m, 24h, 7d)'
            cand --limit 'Show at most this many events'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;audit;help'= {
            cand list 'List audit events, newest first'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;audit;help;list'= {
        }
        &'authctl;audit;help;help'= {
        }
        &'authctl;apikey'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand create 'Create a key with the given scopes and print it once'
            cand list 'List the keys (never the keys themselves)'
            cand revoke 'Revoke a key: refused at once, by every server on the database'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;apikey;create'= {
            cand --name 'A name that says which service holds the key'
            cand --scope 'What the key may do (repeatable; none implies another)'
            cand --expires 'Expire the key after this long (e.g. 90d); default: no expiry'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;apikey;list'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;apikey;revoke'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;apikey;help'= {
            cand create 'Create a key with the given scopes and print it once'
            cand list 'List the keys (never the keys themselves)'
            cand revoke 'Revoke a key: refused at once, by every server on the database'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;apikey;help;create'= {
        }
        &'authctl;apikey;help;list'= {
        }
        &'authctl;apikey;help;revoke'= {
        }
        &'authctl;apikey;help;help'= {
        }
        &'authctl;client'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand add 'Register a client; prints its client_id (and, unless --public, its secret once)'
            cand list 'List the clients (never their secrets)'
            cand remove 'Remove a client: its sessions end and its tokens are refused at once'
            cand rotate-secret 'Give a confidential client a new secret; the old one fails from now on'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;client;add'= {
            cand --name 'A name people see on the login page ("to continue to NAME")'
            cand --redirect-uri 'A redirect URI, compared as an exact string (repeatable); http://127.0.0.1/… and http://[::1]/… match any port (RFC 8252)'
            cand --post-logout-redirect-uri 'Where RP-initiated logout may send the browser back to (repeatable, exact)'
            cand --id-token-alg 'The ID token''s signing algorithm'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand --public 'A public client (an SPA, a mobile app): no secret, PKCE only'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;client;list'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;client;remove'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;client;rotate-secret'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;client;help'= {
            cand add 'Register a client; prints its client_id (and, unless --public, its secret once)'
            cand list 'List the clients (never their secrets)'
            cand remove 'Remove a client: its sessions end and its tokens are refused at once'
            cand rotate-secret 'Give a confidential client a new secret; the old one fails from now on'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;client;help;add'= {
        }
        &'authctl;client;help;list'= {
        }
        &'authctl;client;help;remove'= {
        }
        &'authctl;client;help;rotate-secret'= {
        }
        &'authctl;client;help;help'= {
        }
        &'authctl;health'= {
            cand --url 'Base URL of the server [default: http://127.0.0.1:<port of the configured bind>]'
            cand --check 'Which probe to ask'
            cand --timeout 'Give up after this long (e.g. 3s, 500ms)'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;keys'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand list 'List the signing keys: kid, algorithm, state (current, previous, retired)'
            cand rotate 'Make a new current signing key; the previous one verifies until its tokens expire'
            cand retire 'Stop trusting a key now (a leaked key): its tokens are refused at once'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;keys;list'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;keys;rotate'= {
            cand --algorithm 'Algorithm of the new key (HS256, HS384, HS512, EdDSA, ES256) [default: the configured ALGORITHM]'
            cand --id-token 'Rotate the OpenID Connect provider''s ID-token key of this algorithm instead (RS256, EdDSA, ES256) [default when given without a value: RS256]'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;keys;retire'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;keys;help'= {
            cand list 'List the signing keys: kid, algorithm, state (current, previous, retired)'
            cand rotate 'Make a new current signing key; the previous one verifies until its tokens expire'
            cand retire 'Stop trusting a key now (a leaked key): its tokens are refused at once'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;keys;help;list'= {
        }
        &'authctl;keys;help;rotate'= {
        }
        &'authctl;keys;help;retire'= {
        }
        &'authctl;keys;help;help'= {
        }
        &'authctl;config'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand check 'Validate the configuration and print the effective settings, secrets redacted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;config;check'= {
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;config;help'= {
            cand check 'Validate the configuration and print the effective settings, secrets redacted'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;config;help;check'= {
        }
        &'authctl;config;help;help'= {
        }
        &'authctl;email'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand test 'Send one test message now, synchronously (exit 1 with the server''s reply)'
            cand outbox 'List the outbox: id, kind, recipient, state, attempts, next try, last error'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;email;test'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;email;outbox'= {
            cand --limit 'Show at most this many messages, newest first'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;email;help'= {
            cand test 'Send one test message now, synchronously (exit 1 with the server''s reply)'
            cand outbox 'List the outbox: id, kind, recipient, state, attempts, next try, last error'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;email;help;test'= {
        }
        &'authctl;email;help;outbox'= {
        }
        &'authctl;email;help;help'= {
        }
        &'authctl;db'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
            cand backup 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump'
            cand copy 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;db;backup'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;db;copy'= {
            cand --to 'The target database: sqlite://PATH or postgres://… (it must hold no user) [env: AUTHCTL_COPY_TO, which keeps a password out of the process list]'
            cand --output 'output'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'authctl;db;help'= {
            cand backup 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump'
            cand copy 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;db;help;backup'= {
        }
        &'authctl;db;help;copy'= {
        }
        &'authctl;db;help;help'= {
        }
        &'authctl;completions'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;openapi'= {
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;generate-assets'= {
            cand --dir 'Project directory that holds completions/ and man/'
            cand --config 'Read settings from this TOML file (default: ./authctl.toml if present)'
            cand --database-url 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]'
            cand --log-level 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]'
            cand --log-format 'Log line format [env: AUTHCTL_LOG_FORMAT]'
            cand -h 'Print help'
            cand --help 'Print help'
        }
        &'authctl;help'= {
            cand serve 'Run the REST API (migrates the database first unless --no-migrate)'
            cand migrate 'Apply pending database migrations, or list them with --status'
            cand user 'Manage users'
            cand token 'Inspect, revoke and prune tokens'
            cand audit 'Read the audit log'
            cand apikey 'Create, list and revoke API keys for services (the admin API, introspection)'
            cand client 'Register and manage the applications that sign in with authctl (OpenID Connect)'
            cand health 'Probe a running server; exit 0 when healthy, 1 when not or unreachable'
            cand keys 'List, rotate and retire the signing keys'
            cand config 'Check the configuration and show the effective settings, secrets redacted'
            cand email 'email'
            cand db 'Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)'
            cand completions 'Print a shell completion script'
            cand openapi 'Print the OpenAPI document (no server needed)'
            cand generate-assets 'Write completions/ and man/ from these definitions (for maintainers)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'authctl;help;serve'= {
        }
        &'authctl;help;migrate'= {
        }
        &'authctl;help;user'= {
            cand add 'Create a user (password from --password-stdin or a no-echo prompt)'
            cand list 'List users'
            cand disable 'Disable a user and revoke all of their sessions'
            cand enable 'Enable a disabled user'
            cand delete 'Delete a user with all sessions and tokens'
            cand set-password 'Set a user''s password and revoke all of their sessions'
            cand show 'Show a user with failed logins and any lock'
            cand unlock 'End a user''s lockout (failed logins and lock cleared)'
            cand mfa-reset 'Remove a user''s TOTP and recovery codes (an operator''s recovery; audited)'
            cand sessions 'List a user''s live sessions'
            cand verify 'Mark a user''s email address verified'
            cand reset-link 'Issue a password reset token for an operator to pass on (works without email)'
            cand import 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes'
            cand export 'Export users as JSON Lines (no password hashes unless --with-hashes)'
            cand role 'Give or take away roles'
        }
        &'authctl;help;user;add'= {
        }
        &'authctl;help;user;list'= {
        }
        &'authctl;help;user;disable'= {
        }
        &'authctl;help;user;enable'= {
        }
        &'authctl;help;user;delete'= {
        }
        &'authctl;help;user;set-password'= {
        }
        &'authctl;help;user;show'= {
        }
        &'authctl;help;user;unlock'= {
        }
        &'authctl;help;user;mfa-reset'= {
        }
        &'authctl;help;user;sessions'= {
        }
        &'authctl;help;user;verify'= {
        }
        &'authctl;help;user;reset-link'= {
        }
        &'authctl;help;user;import'= {
        }
        &'authctl;help;user;export'= {
        }
        &'authctl;help;user;role'= {
            cand add 'Give a user roles (tokens issued from now on carry them)'
            cand remove 'Take roles away from a user'
        }
        &'authctl;help;user;role;add'= {
        }
        &'authctl;help;user;role;remove'= {
        }
        &'authctl;help;token'= {
            cand inspect 'Verify a token and show what it is: claims, family, user, state'
            cand revoke-family 'Revoke a token family (session), or all of a user''s'
            cand prune 'Delete expired tokens and long-revoked sessions'
        }
        &'authctl;help;token;inspect'= {
        }
        &'authctl;help;token;revoke-family'= {
        }
        &'authctl;help;token;prune'= {
        }
        &'authctl;help;audit'= {
            cand list 'List audit events, newest first'
        }
        &'authctl;help;audit;list'= {
        }
        &'authctl;help;apikey'= {
            cand create 'Create a key with the given scopes and print it once'
            cand list 'List the keys (never the keys themselves)'
            cand revoke 'Revoke a key: refused at once, by every server on the database'
        }
        &'authctl;help;apikey;create'= {
        }
        &'authctl;help;apikey;list'= {
        }
        &'authctl;help;apikey;revoke'= {
        }
        &'authctl;help;client'= {
            cand add 'Register a client; prints its client_id (and, unless --public, its secret once)'
            cand list 'List the clients (never their secrets)'
            cand remove 'Remove a client: its sessions end and its tokens are refused at once'
            cand rotate-secret 'Give a confidential client a new secret; the old one fails from now on'
        }
        &'authctl;help;client;add'= {
        }
        &'authctl;help;client;list'= {
        }
        &'authctl;help;client;remove'= {
        }
        &'authctl;help;client;rotate-secret'= {
        }
        &'authctl;help;health'= {
        }
        &'authctl;help;keys'= {
            cand list 'List the signing keys: kid, algorithm, state (current, previous, retired)'
            cand rotate 'Make a new current signing key; the previous one verifies until its tokens expire'
            cand retire 'Stop trusting a key now (a leaked key): its tokens are refused at once'
        }
        &'authctl;help;keys;list'= {
        }
        &'authctl;help;keys;rotate'= {
        }
        &'authctl;help;keys;retire'= {
        }
        &'authctl;help;config'= {
            cand check 'Validate the configuration and print the effective settings, secrets redacted'
        }
        &'authctl;help;config;check'= {
        }
        &'authctl;help;email'= {
            cand test 'Send one test message now, synchronously (exit 1 with the server''s reply)'
            cand outbox 'List the outbox: id, kind, recipient, state, attempts, next try, last error'
        }
        &'authctl;help;email;test'= {
        }
        &'authctl;help;email;outbox'= {
        }
        &'authctl;help;db'= {
            cand backup 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump'
            cand copy 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first'
        }
        &'authctl;help;db;backup'= {
        }
        &'authctl;help;db;copy'= {
        }
        &'authctl;help;completions'= {
        }
        &'authctl;help;openapi'= {
        }
        &'authctl;help;generate-assets'= {
        }
        &'authctl;help;help'= {
        }
    ]
    $completions[$command]
}
