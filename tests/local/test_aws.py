"""The template's queues, tables and key, created in moto from their own definitions."""

from __future__ import annotations

import json
from pathlib import Path

from infra.local.aws import LocalAws, provision, store_secret
from infra.local.template import SQS_QUEUE, Resolver, load_template, parameter_values

ROOT = Path(__file__).parents[2]


def test_the_queue_dlq_tables_and_key_are_the_templates(local_aws: LocalAws) -> None:
    template = load_template(ROOT / "template.yaml")
    parameters = parameter_values(template, {})
    resolver = Resolver(template, parameters, region="eu-central-1", stack_name="unit-stack")

    created = {item.logical_id: item for item in provision(local_aws, resolver)}

    main_queue, dead_letter_queue = template.main_and_dead_letter_queues()
    declared = template.of_type(SQS_QUEUE)[main_queue]
    sqs = local_aws.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=resolver.resources[main_queue].ref, AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == resolver.resources[dead_letter_queue].attributes["Arn"]
    assert int(redrive["maxReceiveCount"]) == int(resolver.resolve(declared["RedrivePolicy"]["maxReceiveCount"]))
    assert attributes["VisibilityTimeout"] == str(declared["VisibilityTimeout"])
    assert attributes["MessageRetentionPeriod"] == str(declared["MessageRetentionPeriod"])

    dynamodb = local_aws.client("dynamodb")
    for logical_id, properties in template.of_type("AWS::DynamoDB::Table").items():
        table = dynamodb.describe_table(TableName=created[logical_id].name)["Table"]
        assert table["KeySchema"] == properties["KeySchema"]
        ttl = dynamodb.describe_time_to_live(TableName=created[logical_id].name)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == properties["TimeToLiveSpecification"]["AttributeName"]

    (key_id,) = [logical_id for logical_id in created if created[logical_id].resource_type == "AWS::KMS::Key"]
    kms = local_aws.client("kms")
    sealed = kms.encrypt(KeyId=resolver.resources[key_id].attributes["Arn"], Plaintext=b"x")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"x"


def test_secrets_go_where_the_layer_reads_them(local_aws: LocalAws) -> None:
    store_secret(local_aws, "/crm-bridge/local/unit-key", "s3cr3t-value")
    store_secret(local_aws, "secretsmanager:/crm-bridge/local/unit-webhook", "https://x.bitrix24.com/rest/1/t/")

    ssm = local_aws.client("ssm").get_parameter(Name="/crm-bridge/local/unit-key", WithDecryption=True)
    secret = local_aws.client("secretsmanager").get_secret_value(SecretId="/crm-bridge/local/unit-webhook")
    assert (ssm["Parameter"]["Type"], ssm["Parameter"]["Value"]) == ("SecureString", "s3cr3t-value")
    assert secret["SecretString"] == "https://x.bitrix24.com/rest/1/t/"
