//! The endpoints `config.yaml` declares, kept in the registry like any other.

use crate::config::StaticEndpoint;
use crate::registry::model::EndpointRecord;
use crate::registry::store::Store;
use crate::secure::seal::Sealer;

/// Writes the config's static endpoints into the registry, keeping a disabled state that an
/// earlier 410 or failure streak set while the URL is unchanged. Idempotent: an endpoint
/// already stored as configured is not written again.
pub(crate) async fn sync_static(
    store: &Store,
    endpoints: &[StaticEndpoint],
    sealer: &Sealer,
) -> redis::RedisResult<()> {
    let now = crate::support::clock::now_ms();
    for ep in endpoints {
        let prev = store.get(&ep.id).await?;
        let keep_disabled = prev
            .as_ref()
            .filter(|p| p.url == ep.url && p.disabled)
            .map(|p| p.disabled_reason.clone());
        let rec = EndpointRecord {
            description: "static endpoint from config.yaml".into(),
            disabled: keep_disabled.is_some(),
            disabled_reason: keep_disabled.flatten(),
            created_at: prev.as_ref().map(|p| p.created_at).unwrap_or(now),
            from_config: true,
            ..EndpointRecord::new(
                ep.id.clone(),
                ep.tenant.clone(),
                ep.url.clone(),
                ep.filters.clone(),
                sealer.seal(&ep.secret, &ep.id),
                now,
            )
        };
        let unchanged = prev.as_ref().is_some_and(|p| {
            p.url == rec.url
                && p.filters == rec.filters
                && p.tenant == rec.tenant
                && p.secrets.len() == 1
                && sealer.open(&p.secrets[0].sealed, &p.id).ok().as_deref()
                    == Some(ep.secret.as_str())
        });
        if !unchanged {
            if let Some(p) = &prev {
                if p.tenant != rec.tenant {
                    store.delete(&p.tenant, &p.id).await?;
                }
            }
            store.put(&rec).await?;
        }
    }
    Ok(())
}
