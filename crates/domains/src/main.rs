//! The domains function: on its schedule, takes every custom domain one step further
//! (certificates issued → attached → serving; removals finished).

use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    skyhost_meta::logging::init_lambda();
    let flow = skyhost_domains::config::from_env().await?;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let flow = flow.clone();
        async move { Ok::<_, Error>(skyhost_domains::lambda::handle(&flow).await?) }
    }))
    .await
}
