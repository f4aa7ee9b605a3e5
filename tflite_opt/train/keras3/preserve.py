"""What PQAT, CQAT and PCQAT keep while QAT trains: zeros, and each kernel's shared values.

- Sparsity (PQAT): a fixed 0/1 mask taken from the kernel when QAT starts multiplies the
  kernel at every step, so pruned weights stay exactly 0 whatever the optimizer does.
- Clusters (CQAT): the kernel's distinct values become trainable centroids and each weight a
  fixed index into them, so training moves the shared values but never splits a cluster; a
  kernel clustered to k values (per tensor, or per channel) keeps at most k, and int8
  rounding can only merge values further.
- Both (PCQAT): the mask on top of the centroids keeps the zero cluster at exactly 0.

These are tfmot's ``prune_preserve`` / ``cluster_preserve`` quantizers re-written for
Keras 3 layers (tfmot's are tf_keras objects).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_opt._keras import tf


@dataclasses.dataclass(frozen=True)
class KernelStructure:
    """How a kernel is parameterized during QAT, read once from its starting values.

    Attributes:
        keep_zeros: Multiply by a fixed mask of the kernel's non-zeros.
        centroids: Distinct values of the kernel (trainable during QAT), or None when the
            kernel is trained as is (no clusters to keep, or every value is distinct).
        indices: Index of each weight into ``centroids`` (kernel shape), or None.
    """

    keep_zeros: bool
    centroids: np.ndarray | None
    indices: np.ndarray | None

    @classmethod
    def from_kernel(cls, kernel: np.ndarray, keep_zeros: bool,
                    keep_clusters: bool) -> "KernelStructure":
        """Reads the structure to keep from ``kernel``.

        Distinct values are shared per tensor: a kernel clustered per channel has distinct
        centroids in each channel (equal floats across channels are a measure-zero event
        except 0), so one table covers both per-tensor and per-channel clustering.

        Example:
            >>> s = KernelStructure.from_kernel(np.array([[0., 1.], [1., 0.]]), True, True)
            >>> s.centroids.tolist(), s.indices.tolist()
            ([0.0, 1.0], [[0, 1], [1, 0]])
        """
        keep_zeros = bool(keep_zeros and np.any(kernel == 0))
        if not keep_clusters:
            return cls(keep_zeros, None, None)
        centroids, indices = np.unique(kernel, return_inverse=True)
        if centroids.size == kernel.size:
            return cls(keep_zeros, None, None)  # nothing shared: plain QAT of this kernel
        return cls(keep_zeros, centroids.astype(np.float32),
                   indices.reshape(kernel.shape).astype(np.int32))


def clustered_kernel(centroids: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """The kernel rebuilt from its trainable centroids and fixed indices.

    ``tf.gather`` sends each weight's gradient to its centroid, so every centroid moves by the
    summed gradient of its cluster (tfmot's ``ClusterWeights`` does the same).
    """
    return tf.gather(centroids, indices)
