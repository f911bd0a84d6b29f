//! The [`EventStore`](crate::store::EventStore) conformance suite: tenants sharing one store.

use super::{event, n_of};
use crate::domain::ids::{Position, StreamId, Version};
use crate::store::{EventFilter, EventStore, ExpectedVersion, StoreError};

/// Tenants: the same aggregate type and id in two tenants (and in none)
/// are three streams, each with its own versions; tenant scans, filtered
/// log reads and conditions see one tenant only; ids that look like
/// another tenant's stream are just ids.
pub async fn tenants_are_isolated<S: EventStore>(store: S) {
    use crate::domain::ids::TenantId;
    use crate::store::{AtomicAppend, Scan, Scope};
    let kind = format!("conf.tenants_{}", ulid::Ulid::new());
    let tenant = |t: &str| TenantId::new(format!("{t}-{}", ulid::Ulid::new())).expect("tenant id");
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let in_acme = StreamId::new(kind.clone(), "1").in_tenant(Some(acme.clone()));
    let in_globex = StreamId::new(kind.clone(), "1").in_tenant(Some(globex.clone()));
    let no_tenant = StreamId::new(kind.clone(), "1");
    // Hostile: an id spelling another tenant's stream, in no tenant.
    let lookalike = StreamId::new(kind.clone(), format!("{acme}:{kind}/1"));
    for (n, s) in [&in_acme, &in_globex, &no_tenant, &lookalike].into_iter().enumerate() {
        let done = store
            .append(s, ExpectedVersion::Exact(Version(0)), vec![event("e.tenant", n as u64)])
            .await
            .expect("each is a new stream");
        assert_eq!(done.version, Version(1));
        assert_eq!(done.stream.tenant(), s.tenant());
    }
    store
        .append(
            &in_acme,
            ExpectedVersion::Exact(Version(1)),
            vec![event("e.tenant", 10)],
        )
        .await
        .expect("append");
    assert_eq!(store.stream_version(&in_acme).await.expect("version"), Version(2));
    assert_eq!(store.stream_version(&in_globex).await.expect("version"), Version(1));
    let ns = |events: Vec<crate::store::RecordedEvent>| events.iter().map(|e| n_of(&e.payload)).collect::<Vec<_>>();
    let read = store.read_stream(&in_acme, Version(1), None).await.expect("read");
    assert!(read.iter().all(|e| e.stream == in_acme), "{read:?}");
    assert_eq!(ns(read), [0, 10]);
    assert_eq!(
        ns(store.read_stream(&in_globex, Version(1), None).await.expect("read")),
        [1]
    );
    assert_eq!(
        ns(store.read_stream(&no_tenant, Version(1), None).await.expect("read")),
        [2]
    );
    let loaded = store.read_stream_for_load(&in_globex, Version(1)).await.expect("load");
    assert_eq!(ns(loaded), [1]);

    let scan = |s: Scan| {
        let store = &store;
        async move { ns(store.scan(&s).await.expect("scan")) }
    };
    assert_eq!(
        scan(Scan::of(Scope::TenantCategory(acme.clone(), kind.clone().into()))).await,
        [0, 10]
    );
    assert_eq!(scan(Scan::of(Scope::Tenant(globex.clone()))).await, [1]);
    assert_eq!(scan(Scan::of(Scope::Tenant(acme.clone())).backward()).await, [10, 0]);
    assert_eq!(
        scan(Scan::category(kind.clone())).await,
        [0, 1, 2, 3, 10],
        "a category holds every tenant"
    );
    assert_eq!(scan(Scan::stream(in_acme.clone()).backward()).await, [10, 0]);
    let page = store
        .read_all(Position::START, 100_000, &EventFilter::all().tenant(globex.clone()))
        .await
        .expect("read all");
    assert_eq!(ns(page.clone()), [1]);
    assert!(page.iter().all(|e| e.stream.tenant() == Some(&globex)));

    // A condition on one tenant's category ignores the others'.
    let head = store
        .last_event(&Scope::TenantCategory(acme.clone(), kind.clone().into()))
        .await
        .expect("last")
        .map_or(Position::START, |e| e.position);
    store
        .append(&in_globex, ExpectedVersion::Any, vec![event("e.tenant", 11)])
        .await
        .expect("append");
    let other = StreamId::new(kind.clone(), "2").in_tenant(Some(acme.clone()));
    store
        .append_atomic(
            AtomicAppend::new()
                .stream(
                    other.clone(),
                    ExpectedVersion::Exact(Version(0)),
                    vec![event("e.tenant", 12)],
                )
                .unchanged(Scope::TenantCategory(acme.clone(), kind.clone().into()), head),
        )
        .await
        .expect("acme's category did not change");
    assert!(matches!(
        store
            .append_atomic(
                AtomicAppend::new()
                    .stream(other, ExpectedVersion::Any, vec![event("e.tenant", 13)])
                    .unchanged(Scope::Tenant(acme.clone()), head),
            )
            .await,
        Err(StoreError::ScopeChanged { .. })
    ));

    // Hostile tenant ids are refused before they reach a store.
    for bad in ["", "a:b", "a/b", "a b", "a'b", "a\u{0}b", "ä", &"x".repeat(65)] {
        assert!(TenantId::new(bad).is_err(), "{bad:?} is not a tenant id");
    }
}
