//! Authentication and ACLs through the URL: a password, a wrong password,
//! and an ACL user confined to the runonce prefix.

use runonce::{Dedupe, Error, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test]
async fn requirepass_works_through_the_url() {
    let server = RedisServer::builder().password("s3cret-pw").start();
    assert!(server.url().contains("s3cret-pw"));
    let d = Dedupe::builder()
        .redis_url(server.url())
        .build()
        .await
        .unwrap();
    let a = d.trigger("t", TriggerOptions::with_key("k")).await.unwrap();
    assert!(!a.cached);
    assert_eq!(server.dbsize(), 1);
}

#[tokio::test]
async fn wrong_password_is_a_clear_error() {
    let server = RedisServer::builder().password("s3cret-pw").start();
    let url = format!("redis://:wrong@{}", server.addr());
    let e = Dedupe::builder().redis_url(url).build().await.unwrap_err();
    assert!(matches!(e, Error::AuthFailed { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&server.addr()) && msg.contains("password"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong"),
        "the password must not leak into messages: {msg}"
    );
    // Without the eviction check the same error comes from the first call.
    let d = Dedupe::builder()
        .redis_url(format!("redis://:wrong@{}", server.addr()))
        .check_eviction(false)
        .build()
        .await
        .unwrap();
    let e = d
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AuthFailed { .. }), "{e:?}");
    assert_eq!(server.dbsize(), 0);
}

#[tokio::test]
async fn acl_user_confined_to_the_prefix() {
    let server = RedisServer::start();
    let _: () = server.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("jobs")
            .arg("on")
            .arg(">jobs-pw")
            .arg("~app1:*")
            .arg("+evalsha")
            .arg("+script|load")
            .arg("+del")
            .arg("+ping")
            .arg("+get")
            .arg("+set")
            .arg("+pttl")
            .arg("+time"),
    );
    let url = format!("redis://jobs:jobs-pw@{}", server.addr());
    // CONFIG GET is not granted: the check cannot tell, so it warns and
    // goes on (strict mode would refuse).
    let d = Dedupe::builder()
        .redis_url(&url)
        .prefix("app1")
        .build()
        .await
        .unwrap();
    assert_eq!(d.eviction_policy(), None);
    let a = d.trigger("t", TriggerOptions::with_key("k")).await.unwrap();
    let b = d.trigger("t", TriggerOptions::with_key("k")).await.unwrap();
    assert!(!a.cached && b.cached);
    assert!(d.reset("t", "k").await.unwrap());

    // Outside its prefix the same user is refused, with a typed error.
    let other = Dedupe::builder()
        .redis_url(&url)
        .prefix("app2")
        .check_eviction(false)
        .build()
        .await
        .unwrap();
    let e = other
        .trigger("t", TriggerOptions::with_key("k"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoPermission { .. }), "{e:?}");
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let r: redis::RedisResult<()> = redis::cmd("SET").arg("app2:x").arg("1").query(&mut c);
    assert!(r.is_err(), "the ACL really confines the user");
    assert_eq!(server.dbsize(), 0);

    let strict = Dedupe::builder()
        .redis_url(&url)
        .prefix("app1")
        .strict_eviction_check(true)
        .build()
        .await;
    assert!(matches!(strict, Err(Error::UnsafeEvictionPolicy { .. })));
}
