"""Multilingual distillation: the student maps a sentence and its translation to the teacher's
embedding of the English sentence (parallel sentences + MSELoss), as in the seed.

A real run uses thousands of parallel sentences (e.g. from OPUS/Tatoeba) and a multilingual
student; this one uses a handful of German and French translations to stay fast and offline.

    python examples/distill_multilingual.py
"""

from __future__ import annotations

import tempfile

PARALLEL = [
    ("How do I install a package?", ["Wie installiere ich ein Paket?", "Comment installer un paquet ?"]),
    ("The list is empty.", ["Die Liste ist leer.", "La liste est vide."]),
    ("Refresh the package index.", ["Aktualisiere den Paketindex.", "Actualisez l'index des paquets."]),
    ("Strings are immutable in Python.", ["Zeichenketten sind in Python unveränderlich.",
                                          "Les chaînes sont immuables en Python."]),
    ("The database stores vectors.", ["Die Datenbank speichert Vektoren.", "La base de données stocke des vecteurs."]),
    ("Search for similar documents.", ["Suche nach ähnlichen Dokumenten.", "Recherchez des documents similaires."]),
    ("Where is the configuration file?", ["Wo ist die Konfigurationsdatei?", "Où est le fichier de configuration ?"]),
    ("Upgrade all installed packages.", ["Aktualisiere alle installierten Pakete.",
                                         "Mettez à jour tous les paquets installés."]),
]


def gap(student, teacher) -> float:
    """Mean squared distance between student(translation) and teacher(English)."""
    english = [e for e, _ in PARALLEL]
    target = teacher.encode(english, convert_to_tensor=True)
    total = 0.0
    for column in range(2):
        translated = student.encode([t[column] for _, t in PARALLEL], convert_to_tensor=True)
        total += float(((translated - target) ** 2).mean())
    return total / 2


def main(steps: int = 10) -> dict[str, float]:
    from sdk.encoders.dense import DenseEncoder
    from sdk.training import DenseTrainer, DenseTrainingArguments, parallel_sentences
    from sdk.training.losses.dense import MSELoss

    teacher = DenseEncoder(device="cpu")
    student = DenseEncoder(device="cpu")
    train = parallel_sentences([e for e, _ in PARALLEL], [t for _, t in PARALLEL], teacher)
    before = gap(student, teacher)
    with tempfile.TemporaryDirectory() as out:
        args = DenseTrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=8,
                                      learning_rate=2e-4, report_to=[], disable_tqdm=True, save_strategy="no")
        DenseTrainer(model=student, args=args, train_dataset=train, loss=MSELoss(student)).train()
    after = gap(student, teacher)
    print(f"student(translation) vs teacher(English) MSE: {before:.6f} -> {after:.6f}")
    return {"before": before, "after": after}


if __name__ == "__main__":
    main()
