
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'authctl' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'authctl'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'authctl' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the REST API (migrates the database first unless --no-migrate)')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply pending database migrations, or list them with --status')
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Manage users')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Inspect, revoke and prune tokens')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read the audit log')
            [CompletionResult]::new('apikey', 'apikey', [CompletionResultType]::ParameterValue, 'Create, list and revoke API keys for services (the admin API, introspection)')
            [CompletionResult]::new('client', 'client', [CompletionResultType]::ParameterValue, 'Register and manage the applications that sign in with authctl (OpenID Connect)')
            [CompletionResult]::new('health', 'health', [CompletionResultType]::ParameterValue, 'Probe a running server; exit 0 when healthy, 1 when not or unreachable')
            [CompletionResult]::new('keys', 'keys', [CompletionResultType]::ParameterValue, 'List, rotate and retire the signing keys')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Check the configuration and show the effective settings, secrets redacted')
            [CompletionResult]::new('email', 'email', [CompletionResultType]::ParameterValue, 'email')
            [CompletionResult]::new('db', 'db', [CompletionResultType]::ParameterValue, 'Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('openapi', 'openapi', [CompletionResultType]::ParameterValue, 'Print the OpenAPI document (no server needed)')
            [CompletionResult]::new('generate-assets', 'generate-assets', [CompletionResultType]::ParameterValue, 'Write completions/ and man/ from these definitions (for maintainers)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;serve' {
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address to listen on [env: AUTHCTL_BIND] [default: 127.0.0.1:8000]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--no-migrate', '--no-migrate', [CompletionResultType]::ParameterName, 'Do not migrate; wait until the schema is current instead')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;migrate' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'List applied and pending migrations instead of applying them')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a user (password from --password-stdin or a no-echo prompt)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List users')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user and revoke all of their sessions')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a user with all sessions and tokens')
            [CompletionResult]::new('set-password', 'set-password', [CompletionResultType]::ParameterValue, 'Set a user''s password and revoke all of their sessions')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a user with failed logins and any lock')
            [CompletionResult]::new('unlock', 'unlock', [CompletionResultType]::ParameterValue, 'End a user''s lockout (failed logins and lock cleared)')
            [CompletionResult]::new('mfa-reset', 'mfa-reset', [CompletionResultType]::ParameterValue, 'Remove a user''s TOTP and recovery codes (an operator''s recovery; audited)')
            [CompletionResult]::new('sessions', 'sessions', [CompletionResultType]::ParameterValue, 'List a user''s live sessions')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Mark a user''s email address verified')
            [CompletionResult]::new('reset-link', 'reset-link', [CompletionResultType]::ParameterValue, 'Issue a password reset token for an operator to pass on (works without email)')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export users as JSON Lines (no password hashes unless --with-hashes)')
            [CompletionResult]::new('role', 'role', [CompletionResultType]::ParameterValue, 'Give or take away roles')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;user;add' {
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'Email address (unique, case-insensitive)')
            [CompletionResult]::new('--username', '--username', [CompletionResultType]::ParameterName, 'Username: 3-32 of A-Z a-z 0-9 _ . - (unique, case-insensitive)')
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'Give the user this role (repeatable): [a-z][a-z0-9_.:-]{0,63}')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Create the user disabled')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;list' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most this many users')
            [CompletionResult]::new('--role', '--role', [CompletionResultType]::ParameterName, 'Only users holding this role')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;disable' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;enable' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;delete' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;set-password' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;user;show' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;unlock' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;mfa-reset' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;sessions' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;verify' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;reset-link' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;import' {
            [CompletionResult]::new('--on-conflict', '--on-conflict', [CompletionResultType]::ParameterName, 'What a line matching an existing account (by email or username) does')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Check every line and report what would happen; write nothing')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;export' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--with-hashes', '--with-hashes', [CompletionResultType]::ParameterName, 'Include the password hashes')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;user;role' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Give a user roles (tokens issued from now on carry them)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take roles away from a user')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;user;role;add' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;role;remove' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;user;role;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Give a user roles (tokens issued from now on carry them)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take roles away from a user')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;user;role;help;add' {
            break
        }
        'authctl;user;role;help;remove' {
            break
        }
        'authctl;user;role;help;help' {
            break
        }
        'authctl;user;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a user (password from --password-stdin or a no-echo prompt)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List users')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user and revoke all of their sessions')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a user with all sessions and tokens')
            [CompletionResult]::new('set-password', 'set-password', [CompletionResultType]::ParameterValue, 'Set a user''s password and revoke all of their sessions')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a user with failed logins and any lock')
            [CompletionResult]::new('unlock', 'unlock', [CompletionResultType]::ParameterValue, 'End a user''s lockout (failed logins and lock cleared)')
            [CompletionResult]::new('mfa-reset', 'mfa-reset', [CompletionResultType]::ParameterValue, 'Remove a user''s TOTP and recovery codes (an operator''s recovery; audited)')
            [CompletionResult]::new('sessions', 'sessions', [CompletionResultType]::ParameterValue, 'List a user''s live sessions')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Mark a user''s email address verified')
            [CompletionResult]::new('reset-link', 'reset-link', [CompletionResultType]::ParameterValue, 'Issue a password reset token for an operator to pass on (works without email)')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export users as JSON Lines (no password hashes unless --with-hashes)')
            [CompletionResult]::new('role', 'role', [CompletionResultType]::ParameterValue, 'Give or take away roles')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;user;help;add' {
            break
        }
        'authctl;user;help;list' {
            break
        }
        'authctl;user;help;disable' {
            break
        }
        'authctl;user;help;enable' {
            break
        }
        'authctl;user;help;delete' {
            break
        }
        'authctl;user;help;set-password' {
            break
        }
        'authctl;user;help;show' {
            break
        }
        'authctl;user;help;unlock' {
            break
        }
        'authctl;user;help;mfa-reset' {
            break
        }
        'authctl;user;help;sessions' {
            break
        }
        'authctl;user;help;verify' {
            break
        }
        'authctl;user;help;reset-link' {
            break
        }
        'authctl;user;help;import' {
            break
        }
        'authctl;user;help;export' {
            break
        }
        'authctl;user;help;role' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Give a user roles (tokens issued from now on carry them)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take roles away from a user')
            break
        }
        'authctl;user;help;role;add' {
            break
        }
        'authctl;user;help;role;remove' {
            break
        }
        'authctl;user;help;help' {
            break
        }
        'authctl;token' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Verify a token and show what it is: claims, family, user, state')
            [CompletionResult]::new('revoke-family', 'revoke-family', [CompletionResultType]::ParameterValue, 'Revoke a token family (session), or all of a user''s')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete expired tokens and long-revoked sessions')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;token;inspect' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;token;revoke-family' {
            [CompletionResult]::new('--token', '--token', [CompletionResultType]::ParameterName, 'Revoke the family of this access or refresh token (`-` reads standard input)')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Revoke every family of this user (id, email or username)')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;token;prune' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;token;help' {
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Verify a token and show what it is: claims, family, user, state')
            [CompletionResult]::new('revoke-family', 'revoke-family', [CompletionResultType]::ParameterValue, 'Revoke a token family (session), or all of a user''s')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete expired tokens and long-revoked sessions')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;token;help;inspect' {
            break
        }
        'authctl;token;help;revoke-family' {
            break
        }
        'authctl;token;help;prune' {
            break
        }
        'authctl;token;help;help' {
            break
        }
        'authctl;audit' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;audit;list' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only events about this user: a numeric id (also of a deleted user), an email or a username')
            [CompletionResult]::new('--kind', '--kind', [CompletionResultType]::ParameterName, 'Only events of this kind')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only events of the last DURATION (e.g. 15m, 24h, 7d)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most this many events')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;audit;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;audit;help;list' {
            break
        }
        'authctl;audit;help;help' {
            break
        }
        'authctl;apikey' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a key with the given scopes and print it once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the keys (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key: refused at once, by every server on the database')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;apikey;create' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name that says which service holds the key')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'What the key may do (repeatable; none implies another)')
            [CompletionResult]::new('--expires', '--expires', [CompletionResultType]::ParameterName, 'Expire the key after this long (e.g. 90d); default: no expiry')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;apikey;list' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;apikey;revoke' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;apikey;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a key with the given scopes and print it once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the keys (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key: refused at once, by every server on the database')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;apikey;help;create' {
            break
        }
        'authctl;apikey;help;list' {
            break
        }
        'authctl;apikey;help;revoke' {
            break
        }
        'authctl;apikey;help;help' {
            break
        }
        'authctl;client' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Register a client; prints its client_id (and, unless --public, its secret once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the clients (never their secrets)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a client: its sessions end and its tokens are refused at once')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Give a confidential client a new secret; the old one fails from now on')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;client;add' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name people see on the login page ("to continue to NAME")')
            [CompletionResult]::new('--redirect-uri', '--redirect-uri', [CompletionResultType]::ParameterName, 'A redirect URI, compared as an exact string (repeatable); http://127.0.0.1/… and http://[::1]/… match any port (RFC 8252)')
            [CompletionResult]::new('--post-logout-redirect-uri', '--post-logout-redirect-uri', [CompletionResultType]::ParameterName, 'Where RP-initiated logout may send the browser back to (repeatable, exact)')
            [CompletionResult]::new('--id-token-alg', '--id-token-alg', [CompletionResultType]::ParameterName, 'The ID token''s signing algorithm')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('--public', '--public', [CompletionResultType]::ParameterName, 'A public client (an SPA, a mobile app): no secret, PKCE only')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;client;list' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;client;remove' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;client;rotate-secret' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;client;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Register a client; prints its client_id (and, unless --public, its secret once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the clients (never their secrets)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a client: its sessions end and its tokens are refused at once')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Give a confidential client a new secret; the old one fails from now on')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;client;help;add' {
            break
        }
        'authctl;client;help;list' {
            break
        }
        'authctl;client;help;remove' {
            break
        }
        'authctl;client;help;rotate-secret' {
            break
        }
        'authctl;client;help;help' {
            break
        }
        'authctl;health' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'Base URL of the server [default: http://127.0.0.1:<port of the configured bind>]')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Which probe to ask')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Give up after this long (e.g. 3s, 500ms)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;keys' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the signing keys: kid, algorithm, state (current, previous, retired)')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Make a new current signing key; the previous one verifies until its tokens expire')
            [CompletionResult]::new('retire', 'retire', [CompletionResultType]::ParameterValue, 'Stop trusting a key now (a leaked key): its tokens are refused at once')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;keys;list' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;keys;rotate' {
            [CompletionResult]::new('--algorithm', '--algorithm', [CompletionResultType]::ParameterName, 'Algorithm of the new key (HS256, HS384, HS512, EdDSA, ES256) [default: the configured ALGORITHM]')
            [CompletionResult]::new('--id-token', '--id-token', [CompletionResultType]::ParameterName, 'Rotate the OpenID Connect provider''s ID-token key of this algorithm instead (RS256, EdDSA, ES256) [default when given without a value: RS256]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;keys;retire' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;keys;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the signing keys: kid, algorithm, state (current, previous, retired)')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Make a new current signing key; the previous one verifies until its tokens expire')
            [CompletionResult]::new('retire', 'retire', [CompletionResultType]::ParameterValue, 'Stop trusting a key now (a leaked key): its tokens are refused at once')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;keys;help;list' {
            break
        }
        'authctl;keys;help;rotate' {
            break
        }
        'authctl;keys;help;retire' {
            break
        }
        'authctl;keys;help;help' {
            break
        }
        'authctl;config' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the configuration and print the effective settings, secrets redacted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;config;check' {
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;config;help' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the configuration and print the effective settings, secrets redacted')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;config;help;check' {
            break
        }
        'authctl;config;help;help' {
            break
        }
        'authctl;email' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Send one test message now, synchronously (exit 1 with the server''s reply)')
            [CompletionResult]::new('outbox', 'outbox', [CompletionResultType]::ParameterValue, 'List the outbox: id, kind, recipient, state, attempts, next try, last error')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;email;test' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;email;outbox' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most this many messages, newest first')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;email;help' {
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Send one test message now, synchronously (exit 1 with the server''s reply)')
            [CompletionResult]::new('outbox', 'outbox', [CompletionResultType]::ParameterValue, 'List the outbox: id, kind, recipient, state, attempts, next try, last error')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;email;help;test' {
            break
        }
        'authctl;email;help;outbox' {
            break
        }
        'authctl;email;help;help' {
            break
        }
        'authctl;db' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;db;backup' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;db;copy' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The target database: sqlite://PATH or postgres://… (it must hold no user) [env: AUTHCTL_COPY_TO, which keeps a password out of the process list]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'output')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'authctl;db;help' {
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;db;help;backup' {
            break
        }
        'authctl;db;help;copy' {
            break
        }
        'authctl;db;help;help' {
            break
        }
        'authctl;completions' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;openapi' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;generate-assets' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Project directory that holds completions/ and man/')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read settings from this TOML file (default: ./authctl.toml if present)')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [env: DATABASE_URL]')
            [CompletionResult]::new('--log-level', '--log-level', [CompletionResultType]::ParameterName, 'Log level or tracing filter, e.g. info, debug, authctl=trace [env: LOG_LEVEL]')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log line format [env: AUTHCTL_LOG_FORMAT]')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'authctl;help' {
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the REST API (migrates the database first unless --no-migrate)')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply pending database migrations, or list them with --status')
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Manage users')
            [CompletionResult]::new('token', 'token', [CompletionResultType]::ParameterValue, 'Inspect, revoke and prune tokens')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Read the audit log')
            [CompletionResult]::new('apikey', 'apikey', [CompletionResultType]::ParameterValue, 'Create, list and revoke API keys for services (the admin API, introspection)')
            [CompletionResult]::new('client', 'client', [CompletionResultType]::ParameterValue, 'Register and manage the applications that sign in with authctl (OpenID Connect)')
            [CompletionResult]::new('health', 'health', [CompletionResultType]::ParameterValue, 'Probe a running server; exit 0 when healthy, 1 when not or unreachable')
            [CompletionResult]::new('keys', 'keys', [CompletionResultType]::ParameterValue, 'List, rotate and retire the signing keys')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Check the configuration and show the effective settings, secrets redacted')
            [CompletionResult]::new('email', 'email', [CompletionResultType]::ParameterValue, 'email')
            [CompletionResult]::new('db', 'db', [CompletionResultType]::ParameterValue, 'Back up a SQLite database, or copy the database into another (SQLite ↔ PostgreSQL)')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('openapi', 'openapi', [CompletionResultType]::ParameterValue, 'Print the OpenAPI document (no server needed)')
            [CompletionResult]::new('generate-assets', 'generate-assets', [CompletionResultType]::ParameterValue, 'Write completions/ and man/ from these definitions (for maintainers)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'authctl;help;serve' {
            break
        }
        'authctl;help;migrate' {
            break
        }
        'authctl;help;user' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a user (password from --password-stdin or a no-echo prompt)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List users')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Disable a user and revoke all of their sessions')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Enable a disabled user')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a user with all sessions and tokens')
            [CompletionResult]::new('set-password', 'set-password', [CompletionResultType]::ParameterValue, 'Set a user''s password and revoke all of their sessions')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a user with failed logins and any lock')
            [CompletionResult]::new('unlock', 'unlock', [CompletionResultType]::ParameterValue, 'End a user''s lockout (failed logins and lock cleared)')
            [CompletionResult]::new('mfa-reset', 'mfa-reset', [CompletionResultType]::ParameterValue, 'Remove a user''s TOTP and recovery codes (an operator''s recovery; audited)')
            [CompletionResult]::new('sessions', 'sessions', [CompletionResultType]::ParameterValue, 'List a user''s live sessions')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Mark a user''s email address verified')
            [CompletionResult]::new('reset-link', 'reset-link', [CompletionResultType]::ParameterValue, 'Issue a password reset token for an operator to pass on (works without email)')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import users from JSON Lines (FILE or - for stdin), keeping their bcrypt/Argon2 hashes')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export users as JSON Lines (no password hashes unless --with-hashes)')
            [CompletionResult]::new('role', 'role', [CompletionResultType]::ParameterValue, 'Give or take away roles')
            break
        }
        'authctl;help;user;add' {
            break
        }
        'authctl;help;user;list' {
            break
        }
        'authctl;help;user;disable' {
            break
        }
        'authctl;help;user;enable' {
            break
        }
        'authctl;help;user;delete' {
            break
        }
        'authctl;help;user;set-password' {
            break
        }
        'authctl;help;user;show' {
            break
        }
        'authctl;help;user;unlock' {
            break
        }
        'authctl;help;user;mfa-reset' {
            break
        }
        'authctl;help;user;sessions' {
            break
        }
        'authctl;help;user;verify' {
            break
        }
        'authctl;help;user;reset-link' {
            break
        }
        'authctl;help;user;import' {
            break
        }
        'authctl;help;user;export' {
            break
        }
        'authctl;help;user;role' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Give a user roles (tokens issued from now on carry them)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Take roles away from a user')
            break
        }
        'authctl;help;user;role;add' {
            break
        }
        'authctl;help;user;role;remove' {
            break
        }
        'authctl;help;token' {
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Verify a token and show what it is: claims, family, user, state')
            [CompletionResult]::new('revoke-family', 'revoke-family', [CompletionResultType]::ParameterValue, 'Revoke a token family (session), or all of a user''s')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete expired tokens and long-revoked sessions')
            break
        }
        'authctl;help;token;inspect' {
            break
        }
        'authctl;help;token;revoke-family' {
            break
        }
        'authctl;help;token;prune' {
            break
        }
        'authctl;help;audit' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            break
        }
        'authctl;help;audit;list' {
            break
        }
        'authctl;help;apikey' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a key with the given scopes and print it once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the keys (never the keys themselves)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a key: refused at once, by every server on the database')
            break
        }
        'authctl;help;apikey;create' {
            break
        }
        'authctl;help;apikey;list' {
            break
        }
        'authctl;help;apikey;revoke' {
            break
        }
        'authctl;help;client' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Register a client; prints its client_id (and, unless --public, its secret once)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the clients (never their secrets)')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Remove a client: its sessions end and its tokens are refused at once')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Give a confidential client a new secret; the old one fails from now on')
            break
        }
        'authctl;help;client;add' {
            break
        }
        'authctl;help;client;list' {
            break
        }
        'authctl;help;client;remove' {
            break
        }
        'authctl;help;client;rotate-secret' {
            break
        }
        'authctl;help;health' {
            break
        }
        'authctl;help;keys' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the signing keys: kid, algorithm, state (current, previous, retired)')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Make a new current signing key; the previous one verifies until its tokens expire')
            [CompletionResult]::new('retire', 'retire', [CompletionResultType]::ParameterValue, 'Stop trusting a key now (a leaked key): its tokens are refused at once')
            break
        }
        'authctl;help;keys;list' {
            break
        }
        'authctl;help;keys;rotate' {
            break
        }
        'authctl;help;keys;retire' {
            break
        }
        'authctl;help;config' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Validate the configuration and print the effective settings, secrets redacted')
            break
        }
        'authctl;help;config;check' {
            break
        }
        'authctl;help;email' {
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Send one test message now, synchronously (exit 1 with the server''s reply)')
            [CompletionResult]::new('outbox', 'outbox', [CompletionResultType]::ParameterValue, 'List the outbox: id, kind, recipient, state, attempts, next try, last error')
            break
        }
        'authctl;help;email;test' {
            break
        }
        'authctl;help;email;outbox' {
            break
        }
        'authctl;help;db' {
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Write a consistent copy of the SQLite database to FILE while the server runs (mode 0600; an existing FILE is refused). PostgreSQL: use pg_dump')
            [CompletionResult]::new('copy', 'copy', [CompletionResultType]::ParameterValue, 'Copy every table of this database into the empty database at --to (SQLite ↔ PostgreSQL), migrating it first')
            break
        }
        'authctl;help;db;backup' {
            break
        }
        'authctl;help;db;copy' {
            break
        }
        'authctl;help;completions' {
            break
        }
        'authctl;help;openapi' {
            break
        }
        'authctl;help;generate-assets' {
            break
        }
        'authctl;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
