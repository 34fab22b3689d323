"""The access audit gets enumerated kinds and the state before and after a change.

Rows written before keep what they knew: their free-text action becomes the
nearest kind, and their details become the "after" state.
"""

from django.db import migrations, models

OLD_TO_NEW = {
    ("added", "user"): "user-created",
    ("changed", "user"): "user-changed",
    ("deleted", "user"): "user-deleted",
    ("added", "group"): "group-created",
    ("changed", "group"): "group-changed",
    ("deleted", "group"): "group-deleted",
    ("added", "blueprint scope"): "scope-saved",
    ("changed", "blueprint scope"): "scope-saved",
    ("deleted", "blueprint scope"): "scope-deleted",
}


def name_the_kinds(apps, schema_editor):
    AccessChange = apps.get_model("runs", "AccessChange")
    for change in AccessChange.objects.all():
        change.kind = OLD_TO_NEW.get((change.kind, change.target_type), "user-changed")
        change.after = change.details or {}
        change.save(update_fields=["kind", "after"])


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0011_error_text_search"),
    ]

    operations = [
        migrations.RenameField(model_name="accesschange", old_name="action", new_name="kind"),
        migrations.AddField(
            model_name="accesschange",
            name="before",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="accesschange",
            name="after",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="accesschange",
            name="kind",
            field=models.CharField(
                choices=[
                    ("user-created", "User created"),
                    ("user-changed", "User details changed"),
                    ("user-groups", "Roles and groups set"),
                    ("user-activated", "User activated"),
                    ("user-deactivated", "User deactivated"),
                    ("password-set", "Password set"),
                    ("user-deleted", "User deleted"),
                    ("group-created", "Group created"),
                    ("group-changed", "Group changed"),
                    ("group-deleted", "Group deleted"),
                    ("scope-saved", "Blueprint scope saved"),
                    ("scope-deleted", "Blueprint scope deleted"),
                ],
                max_length=24,
            ),
        ),
        migrations.RunPython(name_the_kinds, migrations.RunPython.noop),
        migrations.RemoveField(model_name="accesschange", name="details"),
    ]
