//! `webhookd serve`: builds the stages (`build`), runs them until SIGTERM (`run`), then
//! drains them within the shutdown grace (`drain`).

mod build;
mod drain;
mod error;
mod listener;
mod run;
mod signals;

pub use error::ServeError;
use signals::Signals;

use crate::config::Config;

pub async fn serve(config: Config) -> Result<(), ServeError> {
    let built = build::build(&config).await?;
    let running = run::run(built, &config).await?;
    let mut signals = Signals::new();
    signals.next().await;
    drain::drain(running, &config, &mut signals).await;
    tracing::info!("stopped");
    Ok(())
}
