def mask_secret(value: str | None, visible: int = 4) -> str:
    """Show only the last few characters of a secret: enough to tell two tokens apart, no more."""
    if not value:
        return ""
    if len(value) <= visible * 2:
        return "•" * 8
    return "•" * 8 + value[-visible:]


def _encrypted_text_field():
    from encrypted_fields.fields import EncryptedTextField

    class SecretField(EncryptedTextField):
        """A secret kept encrypted at rest (Fernet, django-fernet-encrypted-fields: keys derived from SECRET_KEY,
        SECRET_KEY_FALLBACKS for rotation, and SALT_KEY). Read and written as plain text by our code; a value
        stored before encryption is read as it is and encrypted when next saved."""

        def get_prep_value(self, value):
            # The library stores an empty value as NULL; these columns are NOT NULL and "" means "not set".
            return super().get_prep_value(value) if value else ""

        def deconstruct(self):
            name, _path, args, kwargs = super().deconstruct()
            return name, "integrations.secrets.SecretField", args, kwargs

    return SecretField


SecretField = _encrypted_text_field()
