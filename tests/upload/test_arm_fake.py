"""The ARM fake behaves like ARM for what azlift uses, driven by the real SDK."""
from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import models

from tests.support.azurite import azurite  # noqa: F401
from tests.support.fake_arm import fake_arm, fake_arm_server  # noqa: F401
from azlift.upload.arm import ArmTarget, compute_client

MIB = 1024 * 1024


@pytest.fixture
def client(fake_arm):  # noqa: F811
    return compute_client(ArmTarget.resolve(None, arm_endpoint=fake_arm.base_url))


def _image(**overrides):
    os_disk = {"os_type": "Linux", "os_state": "Generalized", "blob_uri": "https://a/b/c.vhd"}
    os_disk.update(overrides)
    return models.Image(location="westeurope", storage_profile=models.ImageStorageProfile(
        os_disk=models.ImageOSDisk(**os_disk)))


@pytest.mark.parametrize("style", ["async-operation", "location"])
def test_image_create_polls_then_succeeds(fake_arm, client, style):  # noqa: F811
    fake_arm.lro_style = style
    fake_arm.polls_before_done = 2
    image = client.images.begin_create_or_update("rg", "img", _image(),
                                                 polling_interval=0).result()
    assert image.provisioning_state == "Succeeded"
    assert image.id.endswith("/resourceGroups/rg/providers/Microsoft.Compute/images/img")
    polls = fake_arm.calls("GET", "/operation")
    assert len(polls) >= 3
    put = fake_arm.calls("PUT", "/images/img")[0]
    assert put.query["api-version"]
    assert put.body["properties"]["storageProfile"]["osDisk"]["osType"] == "Linux"


def test_whole_second_retry_after_is_honoured(fake_arm, client):  # noqa: F811
    import time
    fake_arm.retry_after = 1
    fake_arm.polls_before_done = 1
    started = time.monotonic()
    client.images.begin_create_or_update("rg", "img", _image()).result()
    assert 0.9 <= time.monotonic() - started < 10  # waited the 1 s ARM asked for, not 30 s


def test_disk_put_is_202_and_reaches_ready_to_upload(fake_arm, client):  # noqa: F811
    disk = models.Disk(location="westeurope", creation_data=models.CreationData(
        create_option="Upload", upload_size_bytes=20 * MIB + 512))
    poller = client.disks.begin_create_or_update("rg", "d", disk)
    assert poller.result().disk_state == "ReadyToUpload"
    assert poller.result().provisioning_state == "Succeeded"


def test_unknown_enum_is_refused_with_arm_error_body(fake_arm, client):  # noqa: F811
    with pytest.raises(HttpResponseError) as caught:
        client.images.begin_create_or_update("rg", "img", _image(os_type="Solaris"),
                                             polling_interval=0).result()
    assert caught.value.error.code == "InvalidParameter"
    assert "Solaris" in caught.value.error.message
    assert fake_arm.get(fake_arm.resource_id("image", "rg", "img")) is None


def test_lun_used_twice_is_refused(fake_arm, client):  # noqa: F811
    image = _image()
    image.storage_profile.data_disks = [models.ImageDataDisk(lun=1, blob_uri="https://a/1"),
                                        models.ImageDataDisk(lun=1, blob_uri="https://a/2")]
    with pytest.raises(HttpResponseError, match="LUN 1"):
        client.images.begin_create_or_update("rg", "img", image).result()


def test_version_name_must_be_three_numbers(fake_arm, client):  # noqa: F811
    fake_arm.add_gallery("rg", "gal")
    client.gallery_images.begin_create_or_update("rg", "gal", "def", models.GalleryImage(
        location="westeurope", os_type="Linux", os_state="Generalized",
        identifier=models.GalleryImageIdentifier(publisher="p", offer="o", sku="s")),
        polling_interval=0).result()
    version = models.GalleryImageVersion(location="westeurope", storage_profile=models.
                                         GalleryImageVersionStorageProfile(
        os_disk_image=models.GalleryOSDiskImage(source=models.GalleryDiskImageSource(
            uri="https://a/b.vhd", storage_account_id="/sa"))))
    with pytest.raises(HttpResponseError) as caught:
        client.gallery_image_versions.begin_create_or_update("rg", "gal", "def", "1.0", version).result()
    assert caught.value.error.code == "InvalidParameter"
    done = client.gallery_image_versions.begin_create_or_update(
        "rg", "gal", "def", "1.0.0", version, polling_interval=0).result()
    assert done.provisioning_state == "Succeeded"


@pytest.mark.parametrize("size", [20 * MIB, 20 * MIB + 1024, 19 * MIB + 512,
                                  32 * 1024 * 1024 * MIB + MIB + 512])
def test_upload_size_must_be_whole_mib_plus_footer(fake_arm, client, size):  # noqa: F811
    disk = models.Disk(location="westeurope", creation_data=models.CreationData(
        create_option="Upload", upload_size_bytes=size))
    with pytest.raises(HttpResponseError, match="uploadSizeBytes"):
        client.disks.begin_create_or_update("rg", "d", disk).result()


def test_conflicting_create_on_existing_name(fake_arm, client):  # noqa: F811
    client.images.begin_create_or_update("rg", "img", _image(), polling_interval=0).result()
    same = client.images.begin_create_or_update("rg", "img", _image(), polling_interval=0).result()
    assert same.provisioning_state == "Succeeded"
    with pytest.raises(HttpResponseError) as caught:
        client.images.begin_create_or_update("rg", "img", _image(os_state="Specialized")).result()
    assert caught.value.status_code == 409
    assert caught.value.error.code == "PropertyChangeNotAllowed"


def test_failed_operation_surfaces_arm_error(fake_arm, client):  # noqa: F811
    fake_arm.fail_next_operation = ("InternalDiskManagementError", "Blob is not a VHD.")
    with pytest.raises(HttpResponseError) as caught:
        client.images.begin_create_or_update("rg", "img", _image(), polling_interval=0).result()
    assert "Blob is not a VHD" in str(caught.value)


def test_wrong_token_is_401(fake_arm):  # noqa: F811
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError

    class Wrong:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("nope", 2**31)

    client = compute_client(ArmTarget.resolve(None, arm_endpoint=fake_arm.base_url),
                            credential=Wrong())
    with pytest.raises(ClientAuthenticationError):
        client.images.get("rg", "img")


def test_missing_required_fields_are_refused(fake_arm, client):  # noqa: F811
    with pytest.raises(HttpResponseError) as caught:
        client.images.begin_create_or_update("rg", "img", models.Image(
            storage_profile=models.ImageStorageProfile(os_disk=models.ImageOSDisk(
                os_type="Linux", os_state="Generalized", blob_uri="https://a")))).result()
    assert caught.value.error.code == "LocationRequired"
    fake_arm.add_gallery("rg", "gal")
    with pytest.raises(HttpResponseError, match="identifier.offer"):
        client.gallery_images.begin_create_or_update("rg", "gal", "d", models.GalleryImage(
            location="westeurope", os_type="Linux", os_state="Generalized",
            identifier=models.GalleryImageIdentifier(publisher="p", sku="s"))).result()
    with pytest.raises(HttpResponseError, match="ParentResourceNotFound|not found"):
        client.gallery_images.begin_create_or_update("rg", "nogal", "d", models.GalleryImage(
            location="westeurope", os_type="Linux", os_state="Generalized",
            identifier=models.GalleryImageIdentifier(publisher="p", offer="o", sku="s"))).result()


def test_disk_states_and_access_rules(fake_arm, client, azurite):  # noqa: F811
    fake_arm.azurite = azurite
    size = 20 * MIB + 512
    upload_disk = models.Disk(location="westeurope", creation_data=models.CreationData(
        create_option="Upload", upload_size_bytes=size))
    client.disks.begin_create_or_update("rg", "d", upload_disk).result()
    resized = models.Disk(location="westeurope", creation_data=models.CreationData(
        create_option="Upload", upload_size_bytes=size + MIB))
    with pytest.raises(HttpResponseError) as caught:
        client.disks.begin_create_or_update("rg", "d", resized).result()
    assert caught.value.status_code == 409
    access = client.disks.begin_grant_access("rg", "d", models.GrantAccessData(
        access="Write", duration_in_seconds=600)).result()
    from azure.storage.blob import BlobClient
    blob = BlobClient.from_blob_url(access.access_sas)
    assert blob.get_blob_properties().size == size
    assert client.disks.get("rg", "d").disk_state == "ActiveUpload"
    client.disks.begin_revoke_access("rg", "d").result()
    assert client.disks.get("rg", "d").disk_state == "Unattached"
    with pytest.raises(HttpResponseError) as caught:
        client.disks.begin_grant_access("rg", "d", models.GrantAccessData(
            access="Write", duration_in_seconds=600)).result()
    assert caught.value.error.code == "OperationNotAllowed"


def test_no_sign_in_is_one_short_line(fake_arm):  # noqa: F811
    """A credential that finds no sign-in fails before ARM is asked, and says what to do."""
    from azure.core.exceptions import ClientAuthenticationError

    from azlift.upload.arm import arm_errors
    from azlift.upload.errors import AuthError

    class NobodySignedIn:
        def get_token(self, *scopes, **kwargs):
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token "
                                            "from the included credentials.\nAttempted: ...")

    client = compute_client(ArmTarget.resolve(None, arm_endpoint=fake_arm.base_url),
                            credential=NobodySignedIn())
    with pytest.raises(AuthError) as caught, arm_errors("reading image img"):
        client.images.get("rg", "img")
    assert str(caught.value) == ("no Azure credential while reading image img: sign in with "
                                 "`az login`, or set AZLIFT_ARM_TOKEN")
    assert caught.value.exit_code == 4
    assert fake_arm.requests == []
