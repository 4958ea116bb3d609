//! The `Store` contract on its own, as atuin's db_story does: one story, run against
//! `authctl::store` on SQLite and on PostgreSQL, that walks every method the service
//! relies on — users, sessions, the rotation transaction, revocation, pruning,
//! settings and migrations — and checks both backends answer alike.

use std::sync::Arc;

use authctl::domain::{FamilyId, UserId, UserRef};
use authctl::error::Error;
use authctl::store::{NewUser, PruneReport, Store};
use authctl::tokens::RefreshToken;
use chrono::{DateTime, Duration, Utc};

use crate::support::{Backend, TestDb, test_settings};

crate::on_both_backends!(the_store_keeps_its_contract_through_a_whole_story);

fn new_user(name: &str, now: DateTime<Utc>) -> NewUser {
    NewUser {
        email: format!("{name}@Example.com"),
        email_norm: format!("{}@example.com", name.to_lowercase()),
        username: name.to_owned(),
        username_norm: name.to_lowercase(),
        password_hash: format!("hash-of-{name}"),
        is_active: true,
        now,
    }
}

async fn migrated_store(backend: &Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(backend).await;
    let store = authctl::store::connect(&test_settings(&db.url)).expect("store");
    let applied = store.migrate().await.expect("migrate").applied;
    assert!(!applied.is_empty(), "a fresh database gets every migration");
    (store, db)
}

async fn the_store_keeps_its_contract_through_a_whole_story(backend: Backend) {
    let (store, _db) = migrated_store(&backend).await;
    assert_eq!(store.backend(), backend.name());
    store.ping().await.expect("ping");
    // Timestamps at whole seconds: both backends round-trip them exactly.
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).expect("now");

    // Migrations: all applied, nothing left to apply, the schema current.
    let status = store.migration_status().await.expect("migration status");
    assert!(!status.is_empty());
    assert!(status.iter().all(|m| m.applied), "{status:?}");
    assert!(
        store
            .migrate()
            .await
            .expect("migrate again")
            .applied
            .is_empty()
    );
    assert!(store.schema_is_current().await.expect("schema current"));

    // Users: create, find by each reference, list.
    let alice = store
        .create_user(new_user("Alice", now))
        .await
        .expect("create alice");
    assert_eq!(alice.username, "Alice");
    assert_eq!(alice.email, "Alice@Example.com");
    assert!(alice.is_active);
    assert_eq!(alice.created_at, now);
    for by in [
        UserRef::Id(alice.id),
        UserRef::Email("alice@example.com".into()),
        UserRef::Username("alice".into()),
    ] {
        let found = store.find_user(&by).await.expect("find alice");
        assert_eq!(found.as_ref(), Some(&alice), "{by:?}");
    }
    assert_eq!(
        store
            .find_user(&UserRef::Username("nobody".into()))
            .await
            .expect("find nobody"),
        None
    );

    // A taken email or username is a Conflict, whatever the other field says.
    let mut same_email = new_user("Other", now);
    same_email.email_norm = "alice@example.com".into();
    let mut same_name = new_user("Third", now);
    same_name.username_norm = "alice".into();
    for dup in [same_email, same_name] {
        let result = store.create_user(dup).await;
        assert!(
            matches!(result, Err(Error::Conflict(_))),
            "duplicate: {result:?}"
        );
    }

    let bob = store
        .create_user(new_user("Bob", now))
        .await
        .expect("create bob");
    assert_ne!(bob.id, alice.id);
    let all = store.list_users(10).await.expect("list");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.contains(&alice) && all.contains(&bob));
    assert_eq!(store.list_users(1).await.expect("list 1").len(), 1);

    let creds = store
        .find_credentials("alice@example.com")
        .await
        .expect("credentials")
        .expect("alice has credentials");
    assert_eq!(creds.user, alice);
    assert_eq!(creds.password_hash, "hash-of-Alice");

    // set_active and set_password_hash report whether the user exists.
    let missing = UserId(i64::MAX);
    assert!(store.set_active(bob.id, false, now).await.expect("disable"));
    assert!(
        !store
            .set_active(missing, false, now)
            .await
            .expect("disable nobody")
    );
    let bob_now = store
        .find_user(&UserRef::Id(bob.id))
        .await
        .expect("find bob")
        .expect("bob");
    assert!(!bob_now.is_active);
    let change = |user| authctl::store::PasswordChange {
        user,
        hash: "new-hash",
        keep: None,
        reason: "password changed",
        now,
    };
    assert_eq!(
        store
            .set_password_hash(&change(alice.id))
            .await
            .expect("new hash"),
        Some(0),
        "alice exists and has no session to revoke"
    );
    assert_eq!(
        store
            .set_password_hash(&change(missing))
            .await
            .expect("no user"),
        None
    );
    let creds = store
        .find_credentials("alice")
        .await
        .expect("credentials")
        .expect("alice");
    assert_eq!(creds.password_hash, "new-hash");

    // A session: a family and its first token; the token and the session are found.
    // It is created only for the user as the login verified it: existing, active, and
    // with the very hash that was checked.
    let expires = now + Duration::days(1);
    let family = FamilyId::new();
    let first = RefreshToken::generate().digest();
    for (who, hash, why) in [
        (alice.id, "hash-of-Alice", "a hash that changed since"),
        (bob.id, "hash-of-Bob", "a disabled user"),
        (missing, "new-hash", "a deleted user"),
    ] {
        assert!(
            !store
                .create_family(who, hash, family, &first, now, expires)
                .await
                .expect("conditional create"),
            "no session for {why}"
        );
    }
    assert!(
        store.find_refresh(&first).await.expect("find").is_none(),
        "a refused session leaves no token behind"
    );
    assert!(
        store
            .create_family(alice.id, "new-hash", family, &first, now, expires)
            .await
            .expect("create family")
    );
    let record = store
        .find_refresh(&first)
        .await
        .expect("find refresh")
        .expect("first token");
    assert_eq!(record.family_id, family);
    assert_eq!(record.user_id, alice.id);
    assert_eq!(record.username, "Alice");
    assert!(record.user_active);
    assert_eq!((record.issued_at, record.expires_at), (now, expires));
    assert_eq!(record.family_created_at, now);
    assert_eq!(record.rotated_at, None);
    assert_eq!(record.revoked_at, None);
    assert_eq!(record.family_revoked_at, None);
    let fam = store
        .find_family(family)
        .await
        .expect("find family")
        .expect("family");
    assert_eq!(
        (fam.id, fam.user_id, fam.revoked_at),
        (family, alice.id, None)
    );
    let session = store
        .session_user(alice.id, family, None)
        .await
        .expect("session user")
        .expect("live session");
    assert_eq!(session.user, store_user(&store, alice.id).await);
    assert_eq!(session.family_revoked_at, None);
    assert!(
        store
            .session_user(bob.id, family, None)
            .await
            .expect("someone else's session")
            .is_none()
    );

    // Rotation: the token can be marked rotated once; the successor commits with it.
    let second = RefreshToken::generate().digest();
    let mut tx = store.begin_rotation().await.expect("begin");
    assert!(tx.find_refresh(&first).await.expect("tx find").is_some());
    assert!(tx.mark_rotated(&first, now).await.expect("mark"));
    assert!(
        !tx.mark_rotated(&first, now).await.expect("mark twice"),
        "a token rotates once"
    );
    tx.insert_refresh(family, &second, now, expires)
        .await
        .expect("insert successor");
    tx.commit().await.expect("commit");
    let rotated = store
        .find_refresh(&first)
        .await
        .expect("find")
        .expect("first");
    assert_eq!(rotated.rotated_at, Some(now));
    assert!(store.find_refresh(&second).await.expect("find").is_some());

    // A rotation dropped without commit leaves no trace.
    let third = RefreshToken::generate().digest();
    let mut tx = store.begin_rotation().await.expect("begin");
    assert!(tx.mark_rotated(&second, now).await.expect("mark second"));
    tx.insert_refresh(family, &third, now, expires)
        .await
        .expect("insert third");
    drop(tx);
    let second_after = store
        .find_refresh(&second)
        .await
        .expect("find")
        .expect("second");
    assert_eq!(second_after.rotated_at, None, "rolled back");
    assert!(store.find_refresh(&third).await.expect("find").is_none());

    // Revoking a family ends the session; an unknown family is reported as such.
    assert!(
        store
            .revoke_family(family, "logout", now)
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_family(FamilyId::new(), "logout", now)
            .await
            .expect("revoke unknown")
    );
    let revoked = store
        .find_refresh(&second)
        .await
        .expect("find")
        .expect("second");
    assert_eq!(revoked.family_revoked_at, Some(now));
    let session = store
        .session_user(alice.id, family, None)
        .await
        .expect("session user")
        .expect("the row is still there");
    assert_eq!(session.family_revoked_at, Some(now));

    // Revoking a user's families counts the live ones.
    assert!(store.set_active(bob.id, true, now).await.expect("enable"));
    for _ in 0..2 {
        let created = store
            .create_family(
                bob.id,
                "hash-of-Bob",
                FamilyId::new(),
                &RefreshToken::generate().digest(),
                now,
                expires,
            )
            .await
            .expect("bob's session");
        assert!(created);
    }
    assert_eq!(
        store
            .revoke_user_families(bob.id, "admin", now)
            .await
            .expect("revoke bob"),
        2
    );
    assert_eq!(
        store
            .revoke_user_families(bob.id, "admin", now)
            .await
            .expect("revoke bob again"),
        0
    );

    // Prune: nothing is old enough yet; later, the expired tokens and the revoked
    // families go (alice's two tokens and bob's two; all three families revoked).
    assert_eq!(
        store
            .prune(now, now - Duration::hours(1))
            .await
            .expect("prune now"),
        PruneReport::default()
    );
    assert_eq!(
        store
            .prune(now + Duration::days(2), now + Duration::minutes(1))
            .await
            .expect("prune later"),
        PruneReport {
            tokens: 4,
            families: 3
        }
    );
    assert!(store.find_family(family).await.expect("find").is_none());

    // Settings: the first value stored wins.
    assert_eq!(store.setting_get("story").await.expect("get"), None);
    assert_eq!(
        store
            .setting_get_or_insert("story", "first")
            .await
            .expect("insert"),
        "first"
    );
    assert_eq!(
        store
            .setting_get_or_insert("story", "second")
            .await
            .expect("keep"),
        "first"
    );
    assert_eq!(
        store.setting_get("story").await.expect("get"),
        Some("first".to_owned())
    );

    // Deleting a user reports whether there was one.
    assert!(store.delete_user(bob.id).await.expect("delete bob"));
    assert!(!store.delete_user(bob.id).await.expect("delete again"));
    assert_eq!(
        store.find_user(&UserRef::Id(bob.id)).await.expect("find"),
        None
    );
    assert_eq!(
        store.list_users(10).await.expect("list"),
        vec![store_user(&store, alice.id).await]
    );
    store.close().await;
}

async fn store_user(store: &Arc<dyn Store>, id: UserId) -> authctl::store::User {
    store
        .find_user(&UserRef::Id(id))
        .await
        .expect("find user")
        .expect("user exists")
}
