//! Configuration from `RUNONCE__…` environment variables builds a working
//! handle; a bad value is an error naming the variable.

use runonce::{Config, Error, TriggerOptions};
use runonce_tests::RedisServer;

#[tokio::test]
async fn environment_variables_configure_the_handle() {
    let server = RedisServer::start();
    let url = server.url();
    let vars = [
        ("RUNONCE__REDIS__URL", url.as_str()),
        ("RUNONCE__ENVIRONMENT", "prod"),
        ("RUNONCE__PREFIX", "billing"),
        ("RUNONCE__DEFAULT_TTL", "90s"),
        ("RUNONCE__TIMEOUT", "2s"),
        ("RUNONCE__POOL__MAX_SIZE", "4"),
        ("RUNONCE__STRICT_EVICTION_CHECK", "true"),
        ("HOME", "/ignored"),
    ];
    let d = Config::from_vars(vars)
        .unwrap()
        .builder()
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!((d.environment(), d.prefix()), ("prod", "billing"));
    let t = d
        .trigger("invoice", TriggerOptions::with_key("k"))
        .await
        .unwrap();
    assert!(t.expires_in_ms.unwrap() <= 90_000);
    let keys: Vec<String> = server.query(redis::cmd("KEYS").arg("*"));
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("billing:prod:t:invoice:{"), "{keys:?}");
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("RUNONCE__TIMEOUT", "fast"),
        ("RUNONCE__DEFAULT_TTL", "400d"),
        ("RUNONCE__POOL__MAX_SIZE", "many"),
        ("RUNONCE__DURABILITY__ON_SHORTFALL", "ignore"),
        ("RUNONCE__REDIS__URLL", "redis://typo"),
    ] {
        let e = Config::from_vars([(var, value)]).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e:?}");
        assert!(e.to_string().contains(var), "{var}: {e}");
    }
}
