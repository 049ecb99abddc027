"""`ksf eval`: LFW verification, any pair list, 1:N identification, the Angular Fisher Score of a folder."""

from __future__ import annotations

import shlex

import click

from ksf import options


def _model_options(function):
    """Options every `ksf eval` subcommand shares (model, data, alignment, cache)."""
    return options.apply(
        options.model_option(),
        options.weights_option(),
        options.data_option(),
        options.landmarks_option(help="5-point landmark file. Default: <data>/landmarks.txt if it exists."),
        click.option("--aligned", is_flag=True,
                     help="The images are already aligned crops of the model's input size: no landmarks."),
        click.option("--detect", is_flag=True,
                     help="Find each face and its 5 landmarks with MTCNN (pip install 'keras-sphereface[detect]')."),
        click.option("--images", "images_dir", type=click.Path(file_okay=False, exists=True), default=None,
                     help="Image folder. Default: <data>/images if it exists, else <data>."),
        options.template_option(),
        options.preprocess_option(),
        click.option("--skip-missing", is_flag=True,
                     help="Leave out what lacks an image file or landmarks, and report how much."),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                     help="Embedding cache. Default: $KERAS_SPHEREFACE_HOME/cache/embeddings."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache."),
        options.no_progress_option(),
    )(function)


def _common_kwargs(params: dict) -> dict:
    """Maps the shared CLI options onto the keyword arguments of the evaluation functions.

    The embedding settings become one `EmbeddingOptions` (`embedding=`); the rest pass as they are.
    """
    from keras_sphereface.evaluation import EmbeddingOptions

    kwargs = dict(params)
    align = options.align_mode(kwargs.pop("aligned"), kwargs.pop("detect"), kwargs["landmarks"], default="auto")
    cache_dir = kwargs.pop("cache_dir")
    if kwargs.pop("no_cache"):
        cache_dir = False
    kwargs["embedding"] = EmbeddingOptions(
        align=align, template=kwargs.pop("template"), preprocess=kwargs.pop("preprocess"),
        batch_size=kwargs.pop("batch_size"), cache_dir=cache_dir, progress=not kwargs.pop("no_progress"),
    )
    return kwargs


def _command_line(ctx: click.Context) -> str:
    """The command as typed (options given on the command line only), for the report."""
    from click.core import ParameterSource

    words = ["ksf", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif param.is_flag:
            words.append(param.opts[0])
        else:
            words.extend([param.opts[0], str(value)])
    return shlex.join(words)


@click.group(name="eval")
def eval_group() -> None:
    """Face verification (LFW, any pair list), 1:N identification and the Angular Fisher Score."""


@eval_group.command()
@_model_options
@options.protocol_option()
@click.option("--pairs", "pairs_file", default="pairs.txt", show_default=True,
              help="Pair list inside --data (pairsDevTest.txt for View 1) or a path.")
@options.out_option("out/eval/lfw", "Where report.json, roc.png and scores_hist.png go.")
@click.pass_context
@options.report_errors
def lfw(ctx: click.Context, **params) -> None:
    """LFW 10-fold verification (View 2 pairs.txt), as the SphereFace release evaluates it."""
    from keras_sphereface.evaluation import evaluate_lfw

    kwargs = _common_kwargs(params)
    evaluate_lfw(kwargs.pop("model"), kwargs.pop("data_dir"), command=_command_line(ctx), **kwargs)


@eval_group.command()
@click.argument("pairs_file", type=click.Path(dir_okay=False, exists=True))
@_model_options
@options.protocol_option()
@click.option("--format", "fmt", type=click.Choice(["auto", "lfw", "generic"]), default="auto",
              show_default=True, help="LFW pairs.txt format or `path1 path2 same [fold]` lines.")
@click.option("--folds", "num_folds", type=click.IntRange(2), default=10, show_default=True,
              help="Folds to form (stratified) when the file gives none.")
@options.out_option("out/eval/pairs", "Where report.json, roc.png and scores_hist.png go.")
@click.pass_context
@options.report_errors
def pairs(ctx: click.Context, pairs_file: str, **params) -> None:
    """K-fold verification on any pair list (CALFW, CPLFW, CFP, AgeDB, View 1, your own)."""
    from keras_sphereface.evaluation import evaluate_pairs

    kwargs = _common_kwargs(params)
    evaluate_pairs(pairs_file, kwargs.pop("model"), kwargs.pop("data_dir"), command=_command_line(ctx),
                   **kwargs)


@eval_group.command()
@_model_options
@click.option("--min-images", type=click.IntRange(2), default=10, show_default=True,
              help="Only identities with at least this many images count.")
@click.option("--records", default="*.tfrecord", show_default=True,
              help="TFRecord files in --data to use instead of a folder tree, when there are any.")
@click.option("--flip", type=options.LibraryChoice("keras_sphereface.evaluation.protocol", "FLIP_MODES"),
              default="none", show_default=True,
              help="Combine each embedding with its mirror's.")
@options.out_option("out/eval/afs", "Where afs.json goes.")
@click.pass_context
@options.report_errors
def afs(ctx: click.Context, **params) -> None:
    """Angular Fisher Score (lower is better) of <images>/<identity>/<image> or of TFRecords."""
    from keras_sphereface.evaluation import angular_fisher_score_of_folder

    kwargs = _common_kwargs(params)
    angular_fisher_score_of_folder(kwargs.pop("model"), kwargs.pop("data_dir"), command=_command_line(ctx),
                                   **kwargs)


@eval_group.command()
@_model_options
@click.option("--flip", type=options.LibraryChoice("keras_sphereface.evaluation.protocol", "FLIP_MODES"),
              default="none", show_default=True,
              help="Combine each embedding with its mirror's (none: one embedding per image, as a gallery holds).")
@options.out_option("out/eval/identify", "Where report.json and cmc.png go.")
@click.pass_context
@options.report_errors
def identify(ctx: click.Context, **params) -> None:
    """1:N identification on LFW (or any <images>/<identity>/<image> folder): closed-set CMC rank-1/5/10 and
    open-set DIR at FAR 1% and 0.1% (gallery: one image per person with 2 or more; impostors: people with one)."""
    from keras_sphereface.evaluation import evaluate_identification

    kwargs = _common_kwargs(params)
    evaluate_identification(kwargs.pop("model"), kwargs.pop("data_dir"), command=_command_line(ctx), **kwargs)


@eval_group.command(name="bin")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@options.model_option()
@options.weights_option()
@options.preprocess_option()
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Embedding cache. Default: $KERAS_SPHEREFACE_HOME/cache/embeddings.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the embedding cache.")
@options.no_progress_option()
@options.out_option("out/eval/bin", "Where <stem>/report.json, roc.png and scores_hist.png go, per file.")
@click.pass_context
@options.report_errors
def bin_sets(ctx: click.Context, files: tuple[str, ...], model: str, weights: str | None, preprocess: str,
             batch_size: int, cache_dir: str | None, no_cache: bool, no_progress: bool, out_dir: str) -> None:
    """insightface .bin verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin, ...): insightface's protocol and the
    SphereFace one, per file. The 112x112 ArcFace crops feed 112x112 models as they are, 112x96 ones their centre."""
    from keras_sphereface.evaluation import EmbeddingOptions, evaluate_bin_files

    embedding = EmbeddingOptions(preprocess=preprocess, batch_size=batch_size,
                                 cache_dir=False if no_cache else cache_dir, progress=not no_progress)
    evaluate_bin_files(files, model, weights=weights, embedding=embedding, out_dir=out_dir,
                       command=_command_line(ctx))
