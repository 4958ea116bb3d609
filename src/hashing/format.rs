//! Stored password hashes as standard strings (SPEC §16): bcrypt (`$2a$`, `$2b$`,
//! `$2y$`) and PHC Argon2 (`$argon2id$`, `$argon2i$`). Every supported format
//! verifies whatever is configured; [`PasswordHash::needs_rehash`] says whether a
//! hash differs from the configured algorithm or parameters.

/// What new hashes are made with (`auth.password_hash` and its parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashConfig {
    Bcrypt {
        cost: u32,
    },
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
}

/// bcrypt reads at most 72 bytes; longer is refused, never cut.
pub const BCRYPT_MAX_BYTES: usize = 72;
/// With Argon2id a password may be longer (SPEC §16).
pub const ARGON2_MAX_BYTES: usize = 256;

/// Imported hashes whose one verification would be a denial of service are refused.
pub const IMPORT_MAX_BCRYPT_COST: u32 = 15;
pub const IMPORT_MAX_ARGON2_MEMORY_KIB: u32 = 262_144;
pub const IMPORT_MAX_ARGON2_ITERATIONS: u32 = 16;
pub const IMPORT_MAX_ARGON2_PARALLELISM: u32 = 16;

impl HashConfig {
    /// The longest password (in bytes) this algorithm takes whole.
    pub fn max_password_bytes(self) -> usize {
        match self {
            HashConfig::Bcrypt { .. } => BCRYPT_MAX_BYTES,
            HashConfig::Argon2id { .. } => ARGON2_MAX_BYTES,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashConfig::Bcrypt { .. } => "bcrypt",
            HashConfig::Argon2id { .. } => "argon2id",
        }
    }

    fn argon2(self) -> Result<argon2::Argon2<'static>, String> {
        let HashConfig::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } = self
        else {
            return Err("not an Argon2 configuration".into());
        };
        let params = argon2::Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// Checks the parameters (at startup, so a bad configuration is an error there).
    pub fn validate(self) -> Result<(), String> {
        match self {
            HashConfig::Bcrypt { cost } if !(4..=31).contains(&cost) => {
                Err(format!("bcrypt cost {cost} is outside 4..=31"))
            }
            HashConfig::Bcrypt { .. } => Ok(()),
            HashConfig::Argon2id { .. } => self.argon2().map(|_| ()),
        }
    }

    /// A fresh hash of `password` (already checked against
    /// [`HashConfig::max_password_bytes`]).
    pub fn hash(self, password: &str) -> Result<String, String> {
        if password.len() > self.max_password_bytes() {
            return Err(format!(
                "a password over {} bytes cannot be hashed with {}",
                self.max_password_bytes(),
                self.name()
            ));
        }
        match self {
            HashConfig::Bcrypt { cost } => bcrypt_hash(password, cost).map_err(|e| e.to_string()),
            HashConfig::Argon2id { .. } => {
                let argon2 = self.argon2()?;
                let mut salt = [0u8; 16];
                rand::fill(&mut salt);
                let mut out = [0u8; 32];
                argon2_into(&argon2, password.as_bytes(), &salt, &mut out)?;
                let phc = argon2::PasswordHash {
                    algorithm: argon2::ARGON2ID_IDENT,
                    version: Some(argon2::Version::V0x13.into()),
                    params: argon2::password_hash::phc::ParamsString::try_from(argon2.params())
                        .map_err(|e| e.to_string())?,
                    salt: Some(
                        argon2::password_hash::phc::Salt::new(&salt).map_err(|e| e.to_string())?,
                    ),
                    hash: Some(
                        argon2::password_hash::phc::Output::new(&out).map_err(|e| e.to_string())?,
                    ),
                };
                Ok(phc.to_string())
            }
        }
    }
}

/// A stored hash, parsed: which algorithm, with which parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Bcrypt {
        cost: u32,
    },
    Argon2 {
        /// `argon2id` or `argon2i`.
        variant: &'static str,
        version: u32,
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    },
}

impl PasswordHash {
    /// Parses a stored hash; `None` for anything that is not a supported format
    /// (such a hash never verifies: an imported account without a password).
    pub fn parse(hash: &str) -> Option<Self> {
        if let Some(rest) = ["$2a$", "$2b$", "$2y$"]
            .iter()
            .find_map(|p| hash.strip_prefix(p))
        {
            let (cost, body) = rest.split_once('$')?;
            let cost: u32 = cost.parse().ok().filter(|c| (4..=31).contains(c))?;
            let bcrypt64 = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
            return (rest.len() == 56 && body.len() == 53 && body.chars().all(bcrypt64))
                .then_some(PasswordHash::Bcrypt { cost });
        }
        let variant = if hash.starts_with("$argon2id$") {
            "argon2id"
        } else if hash.starts_with("$argon2i$") {
            "argon2i"
        } else {
            return None;
        };
        let phc = argon2::PasswordHash::new(hash).ok()?;
        phc.salt?;
        phc.hash?;
        let params = argon2::Params::try_from(&phc).ok()?;
        let version = phc.version.unwrap_or(0x10);
        Some(PasswordHash::Argon2 {
            variant,
            version,
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            parallelism: params.p_cost(),
        })
    }

    /// Whether `password` matches `hash`, in any supported format. A password longer
    /// than bcrypt's 72 bytes never matches a bcrypt hash (no truncation).
    pub fn verify(password: &str, hash: &str) -> bool {
        match Self::parse(hash) {
            Some(PasswordHash::Bcrypt { .. }) => bcrypt_verify(password, hash),
            Some(PasswordHash::Argon2 { .. }) => argon2_verify(password, hash).unwrap_or(false),
            None => false,
        }
    }

    /// Whether a hash of this kind should be replaced by one made as configured.
    pub fn needs_rehash(&self, config: HashConfig) -> bool {
        match (self, config) {
            (PasswordHash::Bcrypt { cost }, HashConfig::Bcrypt { cost: want }) => *cost != want,
            (
                PasswordHash::Argon2 {
                    variant,
                    version,
                    memory_kib,
                    iterations,
                    parallelism,
                },
                HashConfig::Argon2id {
                    memory_kib: m,
                    iterations: t,
                    parallelism: p,
                },
            ) => {
                *variant != "argon2id"
                    || *version != 0x13
                    || (*memory_kib, *iterations, *parallelism) != (m, t, p)
            }
            _ => true,
        }
    }

    /// An imported hash: a supported format, with parameters that keep one login
    /// cheap enough (SPEC §16); the reason otherwise.
    pub fn check_import(hash: &str) -> Result<Self, String> {
        let parsed = Self::parse(hash).ok_or(
            "password_hash: not a bcrypt ($2a$/$2b$/$2y$) or PHC Argon2 ($argon2id$/$argon2i$) hash",
        )?;
        match parsed {
            PasswordHash::Bcrypt { cost } if cost > IMPORT_MAX_BCRYPT_COST => Err(format!(
                "password_hash: bcrypt cost {cost} is above {IMPORT_MAX_BCRYPT_COST}"
            )),
            PasswordHash::Argon2 { memory_kib, .. }
                if memory_kib > IMPORT_MAX_ARGON2_MEMORY_KIB =>
            {
                Err(format!(
                    "password_hash: Argon2 memory {memory_kib} KiB is above {IMPORT_MAX_ARGON2_MEMORY_KIB}"
                ))
            }
            PasswordHash::Argon2 { iterations, .. }
                if iterations > IMPORT_MAX_ARGON2_ITERATIONS =>
            {
                Err(format!(
                    "password_hash: Argon2 iterations {iterations} are above {IMPORT_MAX_ARGON2_ITERATIONS}"
                ))
            }
            PasswordHash::Argon2 { parallelism, .. }
                if parallelism > IMPORT_MAX_ARGON2_PARALLELISM =>
            {
                Err(format!(
                    "password_hash: Argon2 parallelism {parallelism} is above {IMPORT_MAX_ARGON2_PARALLELISM}"
                ))
            }
            ok => Ok(ok),
        }
    }
}

/// A hash that costs one configured run to check and matches nothing: what an
/// unknown user's login is verified against. bcrypt: a cheap hash relabelled with
/// the configured cost; Argon2id: random salt and output with the configured
/// parameters. Neither runs the configured algorithm, so startup pays almost nothing.
pub fn dummy_hash(config: HashConfig) -> Result<String, String> {
    use base64::Engine;
    let random = crate::tokens::keys::SecretKey::generate();
    let secret = random.expose_str();
    match config {
        HashConfig::Bcrypt { cost } => {
            let cheap =
                bcrypt_hash(&secret[..secret.len().min(32)], 4).map_err(|e| e.to_string())?;
            Ok(match cheap.strip_prefix("$2b$04$") {
                Some(rest) => format!("$2b${cost:02}${rest}"),
                None => cheap,
            })
        }
        HashConfig::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
            let bytes = secret.as_bytes();
            let salt = b64.encode(&bytes[..bytes.len().min(16)]);
            let out: Vec<u8> = bytes.iter().rev().cycle().take(32).copied().collect();
            Ok(format!(
                "$argon2id$v=19$m={memory_kib},t={iterations},p={parallelism}${salt}${}",
                b64.encode(out)
            ))
        }
    }
}

// The crate's non-truncating functions refuse a password of exactly 72 bytes too
// (they count the C string's NUL terminator, which bcrypt drops at that length
// anyway), so a 72-byte password takes the plain function: all of its bytes are used.
fn bcrypt_hash(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    if password.len() == BCRYPT_MAX_BYTES {
        bcrypt::hash(password, cost)
    } else {
        bcrypt::non_truncating_hash(password, cost)
    }
}

fn bcrypt_verify(password: &str, hash: &str) -> bool {
    let result = if password.len() == BCRYPT_MAX_BYTES {
        bcrypt::verify(password, hash)
    } else {
        bcrypt::non_truncating_verify(password, hash)
    };
    result.unwrap_or(false)
}

thread_local! {
    /// The Argon2 working memory of this (hashing) thread, kept between hashes: one
    /// block of the largest size needed so far. Allocating 19 MiB per hash and freeing
    /// it leaves the allocator's arenas fragmented; over a login flood they held
    /// hundreds of MB. Reused, it is `threads × memory_kib`, the bound SPEC §16 sets.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2 of `password` and `salt` into `out`, in this thread's reused memory.
fn argon2_into(
    argon2: &argon2::Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let needed = argon2.params().block_count();
    BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() < needed {
            blocks.resize(needed, argon2::Block::default());
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
            .map_err(|e| e.to_string())
    })
}

/// Verifies a PHC Argon2 hash (`argon2id` or `argon2i`, any version and parameters
/// the parser accepted), comparing in constant time.
fn argon2_verify(password: &str, hash: &str) -> Result<bool, String> {
    use subtle::ConstantTimeEq as _;
    let phc = argon2::PasswordHash::new(hash).map_err(|e| e.to_string())?;
    let algorithm =
        argon2::Algorithm::try_from(phc.algorithm.as_str()).map_err(|e| e.to_string())?;
    let version = phc
        .version
        .map(argon2::Version::try_from)
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or(argon2::Version::V0x10);
    let params = argon2::Params::try_from(&phc).map_err(|e| e.to_string())?;
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return Ok(false);
    };
    let mut out = vec![0u8; expected.as_bytes().len()];
    let argon2 = argon2::Argon2::new(algorithm, version, params);
    argon2_into(&argon2, password.as_bytes(), salt.as_ref(), &mut out)?;
    Ok(bool::from(out.ct_eq(expected.as_bytes())))
}
