//! Logout: `POST /api/v1/auth/revoke` ends the token's family; unknown tokens are 204 too.

use crate::prelude::*;

crate::on_both_backends!(revoke_logs_out_the_family_and_is_204_for_unknown_tokens,);

async fn revoke_logs_out_the_family_and_is_204_for_unknown_tokens(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (access, refresh) = app.user_with_tokens("henry").await;
    let (other_access, _) = {
        let b = json(app.login("henry", PASSWORD).await).await;
        (b["access_token"].as_str().unwrap().to_owned(), ())
    };
    let r = app.revoke(&refresh).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_problem(app.me(&access).await, 401).await;
    assert_problem(app.refresh(&refresh).await, 401).await;
    assert_eq!(
        app.me(&other_access).await.status(),
        200,
        "other sessions stay"
    );
    // Revoking again, or revoking nonsense, reveals nothing.
    assert_eq!(app.revoke(&refresh).await.status(), 204);
    assert_eq!(
        app.revoke("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await
            .status(),
        204
    );
    assert_eq!(app.revoke("x").await.status(), 204);
    app.shutdown().await;
}
