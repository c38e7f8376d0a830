"""MLflow's classic tutorial, logging to evtrack: an ElasticNet predicting wine quality.

The tracking calls are MLflow's, unchanged; only the import differs::

    pip install 'evtrack[sklearn]'
    python examples/sklearn_elasticnet_wine/train.py [alpha] [l1_ratio]

or as a project (``MLproject`` next to this file), recorded as a run with its parameters::

    evtrack run examples/sklearn_elasticnet_wine -P alpha=0.5 --env-manager local

The data is the white wine part of the UCI Wine Quality set (P. Cortez et al., 2009),
``wine-quality.csv`` next to this file. The model is logged in MLflow's format
(``MLmodel`` folder, skops file, signature and input example) and can be served::

    evtrack models serve -m runs:/<run_id>/model -p 1234
"""

import os
import sys
import warnings

import numpy as np
import pandas as pd
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

try:
    import evtrack as mlflow
except ImportError:  # a project environment without evtrack: MLflow's client, same calls
    import mlflow


def eval_metrics(actual, predicted):
    rmse = float(np.sqrt(mean_squared_error(actual, predicted)))
    mae = float(mean_absolute_error(actual, predicted))
    r2 = float(r2_score(actual, predicted))
    return rmse, mae, r2


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore")
    np.random.seed(40)

    csv = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wine-quality.csv")
    data = pd.read_csv(csv)
    train, test = train_test_split(data, random_state=40)
    train_x, test_x = train.drop(["quality"], axis=1), test.drop(["quality"], axis=1)
    train_y, test_y = train[["quality"]], test[["quality"]]

    alpha = float(argv[1]) if len(argv) > 1 else 0.5
    l1_ratio = float(argv[2]) if len(argv) > 2 else 0.5

    with mlflow.start_run():
        lr = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42)
        lr.fit(train_x, train_y)
        rmse, mae, r2 = eval_metrics(test_y, lr.predict(test_x))

        print(f"Elasticnet model (alpha={alpha:f}, l1_ratio={l1_ratio:f}):")
        print(f"  RMSE: {rmse}")
        print(f"  MAE: {mae}")
        print(f"  R2: {r2}")

        mlflow.log_param("alpha", alpha)
        mlflow.log_param("l1_ratio", l1_ratio)
        mlflow.log_metric("rmse", rmse)
        mlflow.log_metric("r2", r2)
        mlflow.log_metric("mae", mae)
        info = mlflow.sklearn.log_model(lr, name="model", input_example=train_x.head(3))
        print(f"Model: runs:/{info.run_id}/{info.artifact_path} ({info.model_uri})")


if __name__ == "__main__":
    main(sys.argv)
